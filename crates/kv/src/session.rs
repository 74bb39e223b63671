//! Client sessions: exactly-once writes (Raft dissertation §6.3).
//!
//! A client opens a session through the log; its client id is the log index of the open command,
//! so every node assigns the same id. Each write then carries `(client_id, seq)` with `seq`
//! increasing. The table keeps, per session, the last applied `seq` and its whole [`Response`]
//! (errors included: a write that failed must not succeed on retry):
//! - `seq` greater than the last: apply, remember the answer;
//! - `seq` equal to the last: answer the remembered response without applying again;
//! - `seq` smaller: [`crate::KvError::StaleSequence`] (a client has one write in flight at a
//!   time, so it never needs an answer older than the last);
//! - unknown session: [`crate::KvError::SessionNotFound`] (the client opens a new session; the
//!   outcome of its retried write is unknown).
//!
//! ## Bounds and expiry (deterministic)
//!
//! At most [`crate::Limits::sessions_max`] sessions: opening one more fails with
//! [`crate::KvError::SessionLimit`]. A session expires
//! - when [`crate::Limits::session_idle_entries_max`] log entries have been applied since its
//!   last request (checked at every apply, before the entry itself, in `O(log n)`), or
//! - by an explicit `SessionExpire` command (a client closing its session, or a leader's
//!   time-based policy).
//!
//! Both depend only on the log, so every node expires the same sessions at the same index.
//! Sessions (ids, last sequence, last activity index, answers) are replicated state: in the
//! snapshot and the state hash. Memory is bounded by `sessions_max` times the largest answer
//! (`range_bytes_max` for a transaction with ranges).
//!
//! Invariant: `by_activity` holds exactly `(last_active_index, client_id)` of every session.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::Response;
use crate::{ClientId, KvError};

/// One client session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    /// Sequence number of the last applied write (0: none yet).
    pub(crate) last_seq: u64,
    /// Log index of the session's last request (or of its opening).
    pub(crate) last_active_index: u64,
    /// The answer to `last_seq` (`None` before the first write).
    pub(crate) last_response: Option<Response>,
}

/// What to do with a request of a session.
#[derive(Debug)]
pub(crate) enum SessionCheck {
    /// Apply it, then [`Sessions::record`] the answer.
    Apply,
    /// Answer this without applying.
    Answer(Response),
    /// Refuse with this error (nothing is recorded).
    Refuse(KvError),
}

/// The session table (module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Sessions {
    sessions: BTreeMap<ClientId, Session>,
    by_activity: BTreeSet<(u64, ClientId)>,
}

impl Sessions {
    /// Number of open sessions.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// All sessions in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.sessions.iter()
    }

    /// A session.
    pub(crate) fn get(&self, client_id: ClientId) -> Option<&Session> {
        self.sessions.get(&client_id)
    }

    /// Opens session `client_id` (the log index of the open) if fewer than `max` are open.
    pub(crate) fn open(&mut self, client_id: ClientId, max: u64) -> Result<(), KvError> {
        if self.sessions.len() as u64 >= max {
            return Err(KvError::SessionLimit { max });
        }
        self.insert(
            client_id,
            Session {
                last_seq: 0,
                last_active_index: client_id,
                last_response: None,
            },
        );
        Ok(())
    }

    /// Adds a session (open, or restore from a snapshot).
    pub(crate) fn insert(&mut self, client_id: ClientId, session: Session) {
        self.by_activity
            .insert((session.last_active_index, client_id));
        assert!(
            self.sessions.insert(client_id, session).is_none(),
            "session {client_id} opened twice"
        );
    }

    /// Removes a session. Returns whether it existed.
    pub(crate) fn expire(&mut self, client_id: ClientId) -> bool {
        match self.sessions.remove(&client_id) {
            Some(session) => {
                self.by_activity
                    .remove(&(session.last_active_index, client_id));
                true
            }
            None => false,
        }
    }

    /// Expires every session idle for more than `idle_max` entries at log index `index`
    /// (`idle_max == 0`: never).
    pub(crate) fn expire_idle(&mut self, index: u64, idle_max: u64) {
        if idle_max == 0 {
            return;
        }
        while let Some(&(last_active, client_id)) = self.by_activity.first() {
            if last_active.saturating_add(idle_max) >= index {
                break;
            }
            self.expire(client_id);
        }
    }

    /// Decides what to do with write `seq` of `client_id` (module docs).
    pub(crate) fn check(&self, client_id: ClientId, seq: u64) -> SessionCheck {
        let Some(session) = self.sessions.get(&client_id) else {
            return SessionCheck::Refuse(KvError::SessionNotFound { client_id });
        };
        match (seq.cmp(&session.last_seq), &session.last_response) {
            (std::cmp::Ordering::Greater, _) => SessionCheck::Apply,
            (std::cmp::Ordering::Equal, Some(response)) => SessionCheck::Answer(response.clone()),
            _ => SessionCheck::Refuse(KvError::StaleSequence {
                client_id,
                seq,
                last_seq: session.last_seq,
            }),
        }
    }

    /// Records the answer to write `seq` of `client_id`, applied at `index` (if the session still
    /// exists: the write may have expired it).
    pub(crate) fn record(&mut self, client_id: ClientId, seq: u64, index: u64, response: Response) {
        let Some(session) = self.sessions.get_mut(&client_id) else {
            return;
        };
        self.by_activity
            .remove(&(session.last_active_index, client_id));
        session.last_seq = seq;
        session.last_active_index = index;
        session.last_response = Some(response);
        self.by_activity.insert((index, client_id));
    }
}
