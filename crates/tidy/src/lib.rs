//! # raftkv-tidy: checks on the workspace's source
//!
//! Holds no code: its test (`tests/tidy.rs`) reads every crate's sources and manifests and checks
//! the rules ARCHITECTURE.md states for them (purity of `raft`, `kv` and `replica`, no `dbg!`,
//! file lengths that only go down).
