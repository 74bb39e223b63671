//! The clients' history: every operation with when it was invoked and how it ended, the input of
//! the linearizability checker.
//!
//! Times are positions in one global, strictly increasing sequence of history events, so "A
//! returned before B was invoked" is exact even when both happened at the same virtual instant.
//!
//! Besides the clients' operations, the history holds the system's: a lease revoked on expiry
//! deletes its keys, which the register model must see as deletes. Such an operation is recorded
//! when its entry is first applied, invoked at the history time its revoke was proposed (`stamp`)
//! and answered at the first application: it took effect somewhere in between.
//!
//! Invariant: an operation is invoked once and ends at most once; one that has not ended when the
//! run stops is `Unknown`.

use std::fmt;

use crate::kv::{ClientId, Op, OpResult, RequestId};

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting for an answer.
    Pending,
    /// It took effect, with this result, and the client learned so at history time `at`.
    Ok {
        /// The result.
        result: OpResult,
        /// History time of the answer.
        at: u64,
    },
    /// It certainly did not take effect (no proposal of it was ever accepted).
    Fail,
    /// The client gave up without an answer: it may or may not have taken effect.
    Unknown,
}

/// One operation of one client (or of the system: client 0).
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// Who issued it (0: the system).
    pub client: ClientId,
    /// Its number in the client's session.
    pub request: RequestId,
    /// What it does.
    pub op: Op,
    /// History time of the invocation.
    pub invoked_at: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for OpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c{}#{} {} @{} -> ",
            self.client, self.request, self.op, self.invoked_at
        )?;
        match self.outcome {
            Outcome::Pending => write!(f, "pending"),
            Outcome::Ok { result, at } => write!(f, "{result} @{at}"),
            Outcome::Fail => write!(f, "fail"),
            Outcome::Unknown => write!(f, "unknown"),
        }
    }
}

/// Every operation of a run: the clients' in invocation order, each system operation where its
/// answer was recorded.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The operations; an operation's position is its id.
    ops: Vec<OpRecord>,
    /// The next history time.
    clock: u64,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    fn now(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records an invocation; returns the operation's id.
    pub fn invoke(&mut self, client: ClientId, request: RequestId, op: Op) -> usize {
        let invoked_at = self.now();
        self.ops.push(OpRecord {
            client,
            request,
            op,
            invoked_at,
            outcome: Outcome::Pending,
        });
        self.ops.len() - 1
    }

    /// A point in history time (the proposal of a system operation).
    pub fn stamp(&mut self) -> u64 {
        self.now()
    }

    /// Records a system operation invoked at history time `invoked_at` that took effect with
    /// `result` by now.
    pub fn system(&mut self, op: Op, invoked_at: u64, result: OpResult) {
        let at = self.now();
        self.ops.push(OpRecord {
            client: 0,
            request: 0,
            op,
            invoked_at,
            outcome: Outcome::Ok { result, at },
        });
    }

    /// Records a successful answer to a pending operation.
    pub fn ok(&mut self, id: usize, result: OpResult) {
        let at = self.now();
        self.end(id, Outcome::Ok { result, at });
    }

    /// Records that a pending operation certainly did not happen.
    pub fn fail(&mut self, id: usize) {
        self.end(id, Outcome::Fail);
    }

    /// Records that the client gave up on a pending operation.
    pub fn unknown(&mut self, id: usize) {
        self.end(id, Outcome::Unknown);
    }

    fn end(&mut self, id: usize, outcome: Outcome) {
        if let Some(record) = self.ops.get_mut(id)
            && record.outcome == Outcome::Pending
        {
            record.outcome = outcome;
        }
    }

    /// Marks every still-pending operation `Unknown` (the run stopped).
    pub fn close(&mut self) {
        for record in &mut self.ops {
            if record.outcome == Outcome::Pending {
                record.outcome = Outcome::Unknown;
            }
        }
    }

    /// All operations, in invocation order.
    pub fn ops(&self) -> &[OpRecord] {
        &self.ops
    }

    /// Builds a history from hand-written records (for testing the checker).
    pub fn from_records(ops: Vec<OpRecord>) -> Self {
        let clock = ops
            .iter()
            .map(|r| match r.outcome {
                Outcome::Ok { at, .. } => at.max(r.invoked_at),
                _ => r.invoked_at,
            })
            .max()
            .unwrap_or(0);
        History { ops, clock }
    }
}
