//! The operations of a node, for every protocol front end (the raftkv HTTP API today; etcd's and
//! Consul's next): propose a key-value request (optionally as a write of a client session),
//! wait for a read barrier, read the applied state, renew a lease, change the membership, watch.
//! Nothing here knows HTTP: answers are the engine's `Applied` and typed [`RequestError`]s, which
//! each front end renders in its own dialect.
//!
//! Invariants: every request reaches the driver through its bounded input queue (at most
//! `CLIENT_INPUTS_MAX` client requests queued; the rest is kept for peers) and is answered within
//! `ServerConfig::request_timeout` (`Unknown` after that: it may still happen); the state lock is
//! held only inside [`Service::read`] and never across an await.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};

use raftkv_kv::{KvError, Request};
use raftkv_raft::{Index, NodeId, ReadMode};
use tokio::sync::oneshot;

use crate::config::ServerConfig;
use crate::error::RequestError;
use crate::members::Member;
use crate::node::{CLIENT_INPUTS_MAX, Input, NodeStatus, Reply, Shared};
use crate::state::{Applied, Command, State};
use raftkv_replica::alarms::Alarm;
use raftkv_replica::auth::AuthChange;

/// Election timeouts a leadership transfer may take before it is reported as failed.
const TRANSFER_WAIT_ELECTIONS: u32 = 3;
/// How long a join waits to reach the joining node's peer URL.
pub const JOIN_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A write of a client session: applied at most once however often it is retried with the same
/// sequence number (see `raftkv_kv`'s sessions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSession {
    /// The session's id, from opening it.
    pub client_id: u64,
    /// The write's number in the session (increasing; a retry repeats it).
    pub seq: u64,
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// A ReadIndex round: sees every write acknowledged before the read began.
    Linearizable,
    /// The leader's lease: linearizable while clocks drift less than the lease margin.
    Lease,
    /// This node's applied state, possibly behind.
    Stale,
}

/// The node's operations (cheap to clone).
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    /// The driver's input queue.
    inputs: SyncSender<Input>,
    /// State and status shared with the driver.
    shared: Arc<Shared>,
    /// Settings.
    config: ServerConfig,
    /// This node's registry record.
    me: Member,
    /// With client TLS: how this node calls other members' client ports.
    client_tls: Option<crate::tls::Tls>,
}

impl Service {
    /// The operations of the node whose driver reads `inputs`.
    pub fn new(
        inputs: SyncSender<Input>,
        shared: Arc<Shared>,
        config: ServerConfig,
        me: Member,
        client_tls: Option<crate::tls::Tls>,
    ) -> Self {
        Service {
            inner: Arc::new(Inner {
                inputs,
                shared,
                config,
                me,
                client_tls,
            }),
        }
    }

    /// With client TLS: how this node calls other members' client ports.
    pub fn client_tls(&self) -> Option<&crate::tls::Tls> {
        self.inner.client_tls.as_ref()
    }

    /// State, status and metrics shared with the driver.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The node's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// This node's registry record.
    pub fn me(&self) -> &Member {
        &self.inner.me
    }

    /// The latest status.
    pub fn status(&self) -> NodeStatus {
        self.inner.shared.status().clone()
    }

    /// Reads the applied state (briefly locked).
    pub fn read<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.shared.state())
    }

    /// Proposes a key-value request (validated here against the store's limits), as a write of
    /// `session` if given, and waits for it to be applied.
    pub async fn write(
        &self,
        request: Request,
        session: Option<ClientSession>,
    ) -> Result<Applied, RequestError> {
        let request = match session {
            Some(s) => request.with_session(s.client_id, s.seq),
            None => request,
        };
        request.validate(&crate::state::limits()).map_err(invalid)?;
        let op = request.op.as_ref().map_or("none", |op| op.name());
        let data = Command::kv(request.encode_to_vec().into());
        let started = std::time::Instant::now();
        let result = match self.ask(|reply| Input::Propose { data, reply }).await {
            Ok(Applied::NoSpace) => Err(RequestError::NoSpace),
            Ok(Applied::Corrupt) => Err(RequestError::Corrupt),
            other => other,
        };
        let observed = &self.inner.shared.metrics.observed;
        match &result {
            Ok(_) => observed.request(op, started.elapsed()),
            // Not failed: the front end forwards it to the leader.
            Err(RequestError::NotLeader { .. }) => {}
            Err(_) => {
                observed.proposals_failed.inc();
            }
        }
        result
    }

    /// Raises (`activate`) or clears `alarm` through the log.
    pub async fn alarm(&self, activate: bool, alarm: Alarm) -> Result<Applied, RequestError> {
        let data = Command::alarm(activate, alarm);
        self.ask(|reply| Input::Propose { data, reply }).await
    }

    /// Changes users, roles, permissions or whether authentication is enabled, through the log.
    pub async fn auth(&self, change: AuthChange) -> Result<Applied, RequestError> {
        let data = Command::auth(change);
        self.ask(|reply| Input::Propose { data, reply }).await
    }

    /// Proposes a corruption-check point (every member hashes its state as of it).
    pub async fn hash_check(&self) -> Result<Applied, RequestError> {
        let data = Command::hash_check(self.inner.me.id);
        self.ask(|reply| Input::Propose { data, reply }).await
    }

    /// Records a member's addresses through the log.
    pub async fn publish(&self, member: Member) -> Result<Applied, RequestError> {
        let data = Command::publish(member);
        self.ask(|reply| Input::Propose { data, reply }).await
    }

    /// Waits until this node may serve a read at `consistency`.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), RequestError> {
        let mode = match consistency {
            Consistency::Stale => return Ok(()),
            Consistency::Linearizable => ReadMode::ReadIndex,
            Consistency::Lease => ReadMode::Lease,
        };
        let started = std::time::Instant::now();
        let result = self.ask(|reply| Input::Read { mode, reply }).await;
        if result.is_ok() {
            let op = match mode {
                ReadMode::Lease => "range_lease",
                _ => "range_linearizable",
            };
            self.inner
                .shared
                .metrics
                .observed
                .request(op, started.elapsed());
        }
        result
    }

    /// Renews a lease on the leader: its TTL in milliseconds, or the store's refusal.
    pub async fn keep_alive(&self, id: i64) -> Result<Result<u64, KvError>, RequestError> {
        self.ask(|reply| Input::LeaseKeepAlive { id, reply }).await
    }

    /// Adds `member` as a learner (promoted once caught up).
    /// A name that was removed, or is taken by another peer URL, is refused, and so is a peer URL
    /// nothing listens on (a member nobody can reach would stay a learner for ever). A node
    /// joining at the peer URL of a member an operator added ([`Service::add_member`]) takes that
    /// member's id. Returns the configuration entry's index and the id the node has.
    pub async fn join(&self, mut member: Member) -> Result<(Index, NodeId), RequestError> {
        let address = crate::config::host_port(&member.peer_url)
            .map_err(|e| RequestError::Invalid(e.to_string()))?;
        match tokio::time::timeout(JOIN_PROBE_TIMEOUT, tokio::net::TcpStream::connect(&address))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(RequestError::Invalid(format!(
                    "cannot reach the joining node at {}: {e}; it must listen on its peer URL",
                    member.peer_url
                )));
            }
            Err(_) => {
                return Err(RequestError::Invalid(format!(
                    "the joining node at {} did not answer within {JOIN_PROBE_TIMEOUT:?}",
                    member.peer_url
                )));
            }
        }
        let added = self.read(|state| {
            state
                .registry
                .by_peer_url(&member.peer_url)
                .filter(|m| m.is_unstarted())
                .map(|m| m.id)
        });
        if let Some(id) = added {
            member.id = id;
        }
        self.read(|state| {
            if state.registry.is_removed(member.id) {
                return Err(RequestError::Conflict(format!(
                    "a member named `{}` was removed from this cluster; join under a new name",
                    member.name
                )));
            }
            match state.registry.by_name(&member.name) {
                Some(existing) if existing.peer_url != member.peer_url => {
                    Err(RequestError::Conflict(format!(
                        "a member named `{}` already exists with peer URL {}",
                        member.name, existing.peer_url
                    )))
                }
                _ => Ok(()),
            }
        })?;
        let id = member.id;
        let index = self
            .ask(|reply| Input::Join {
                member,
                held: false,
                reply,
            })
            .await?;
        Ok((index, id))
    }

    /// Adds an unstarted member at `peer_url` under `id` (etcd's `MemberAdd`): a learner,
    /// promoted once caught up unless `held` (etcd's `--learner`: then only by
    /// [`Service::promote_member`]). The node joins later, at that peer URL. A peer URL already
    /// in use is refused.
    pub async fn add_member(
        &self,
        id: NodeId,
        peer_url: String,
        held: bool,
    ) -> Result<Index, RequestError> {
        let member = Member::unstarted(id, peer_url);
        if let Some(reason) = member.invalid() {
            return Err(RequestError::Invalid(reason));
        }
        self.ask(|reply| Input::Join {
            member,
            held,
            reply,
        })
        .await
    }

    /// Makes learner `id` a voter, if it has caught up; the configuration entry's index.
    pub async fn promote_member(&self, id: NodeId) -> Result<Index, RequestError> {
        self.ask(|reply| Input::Promote { id, reply }).await
    }

    /// Hands leadership to voter `target` (this node must be the leader) and waits, at most
    /// `TRANSFER_WAIT_ELECTIONS` election timeouts, for it to take over.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), RequestError> {
        self.ask(|reply| Input::TransferLeader { target, reply })
            .await?;
        let config = &self.inner.config;
        let wait = config.tick * config.election_ticks * TRANSFER_WAIT_ELECTIONS;
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if self.status().leader == Some(target) {
                return Ok(());
            }
            tokio::time::sleep(config.tick).await;
        }
        Err(RequestError::Unavailable(format!(
            "leadership did not move to {target:x} within {wait:?}"
        )))
    }

    /// Removes a member; the configuration entry's index.
    pub async fn remove_member(&self, id: NodeId) -> Result<Index, RequestError> {
        self.ask(|reply| Input::RemoveMember { id, reply }).await
    }

    /// The client URL of `leader` (or of the leader this node knows of), unless that is this
    /// node or its URL is not known yet.
    pub fn leader_client_url(&self, leader: Option<NodeId>) -> Option<String> {
        let leader = leader.or_else(|| self.inner.shared.status().leader)?;
        if leader == self.inner.me.id {
            return None;
        }
        self.read(|state| {
            state
                .registry
                .get(leader)
                .map(|m| m.client_url.clone())
                .filter(|url| !url.is_empty())
        })
    }

    /// Queues the input `make` builds around a reply channel, and waits for the driver's answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Input) -> Result<T, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.submit(make(reply))?;
        let timeout = self.inner.config.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RequestError::Unknown(
                "the node stopped before answering".into(),
            )),
            Err(_) => Err(RequestError::Unknown(format!(
                "not done within {timeout:?}; it may still happen"
            ))),
        }
    }

    fn submit(&self, input: Input) -> Result<(), RequestError> {
        let queued = &self.inner.shared.client_inputs;
        if queued.fetch_add(1, Ordering::Relaxed) >= CLIENT_INPUTS_MAX {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(RequestError::Unavailable(
                "the node is overloaded (too many queued requests)".into(),
            ));
        }
        match self.inner.inputs.try_send(input) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                Err(RequestError::Unavailable(
                    "the node is overloaded (input queue full)".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                Err(RequestError::Unavailable("the node is stopping".into()))
            }
        }
    }
}

/// A request the store refuses before it is proposed: over a limit, or malformed.
fn invalid(error: KvError) -> RequestError {
    match error {
        KvError::KeyTooLarge { .. }
        | KvError::ValueTooLarge { .. }
        | KvError::RequestTooLarge { .. }
        | KvError::RangeTooLarge { .. }
        | KvError::TooManyOps { .. } => RequestError::TooLarge(error.to_string()),
        other => RequestError::Invalid(other.to_string()),
    }
}
