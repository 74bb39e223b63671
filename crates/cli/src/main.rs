//! The `raftkv` binary (under construction).
fn main() {}
