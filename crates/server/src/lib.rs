//! The raftkv server (under construction).
