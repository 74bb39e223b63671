//! The raftkv state machine (under construction).
