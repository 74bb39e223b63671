//! The driver: one thread that feeds the replica engine (`raftkv-replica`) its inputs (ticks from
//! the clock, peer messages, client requests) and carries out its output: messages to the
//! transport, storage writes on the WAL, snapshots to a worker thread, replies to the waiting
//! clients. Everything the node decides is decided by the engine; this loop only does the I/O.
//!
//! Each turn of the loop takes every queued input at once, so all proposals that arrived meanwhile
//! share one `Persist` (batching). The driver appends each `Persist` to the WAL and leaves the
//! `fdatasync` to the syncer thread (`syncer.rs`), so it keeps taking input while the disk works;
//! the `Persist`s written during one sync share the next (group commit), and each is reported to
//! the engine, in order, once a sync that began after its write has succeeded. A leader's appends
//! go out before its own sync (pipelining); votes and acknowledgements only after it. A leader
//! whose sync runs past the stall bound hands leadership over (`Replica::disk_stalled`).
//!
//! Snapshots never block the loop: the engine hands over a copy-on-write view, the snapshot
//! worker encodes it, writes and syncs the file, and reports back; the loop then only records a
//! small mark in the WAL.
//!
//! Invariants: a WAL error or a fatal engine error stops the node (nothing after it is
//! acknowledged); overdue ticks are delivered before any other input.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftkv_kv::KvError;
use raftkv_raft::{Index, Message, NodeId, ReadMode, Role};
use raftkv_replica::{Answer, Event, Output, Persist, Replica, RequestId};

pub use crate::shared::{NodeStatus, Shared};
use raftkv_wal::{FsDisk, Wal};
use tokio::sync::oneshot;

use crate::config::{ServerConfig, host_port};
use crate::error::RequestError;
use crate::members::Member;
use crate::metrics::{Metrics, SLOW_APPLY};
use crate::snapshots::{self, Done, Installed, Job};
use crate::state::Applied;
use crate::syncer;
use crate::transport::{PeerAddrs, Transport};

/// Inputs queued for the driver before senders are refused (clients get 503, peers' messages
/// are dropped).
pub const INPUT_QUEUE_MAX: usize = 8192;
/// Client requests queued for the driver at once; the rest of `INPUT_QUEUE_MAX` is kept for
/// peer messages, so a flood of clients cannot crowd out heartbeats and votes.
pub const CLIENT_INPUTS_MAX: usize = INPUT_QUEUE_MAX / 2;
/// Inputs handled per turn before the driver takes the engine's output (bounds the batch).
pub const INPUT_BATCH_MAX: usize = 4096;

/// A request's reply channel.
pub type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// What the driver is asked to do.
pub enum Input {
    /// Messages from a peer.
    Peer(Vec<Message>),
    /// Propose a command payload (see `state::Command`); answered once applied.
    Propose {
        /// The payload.
        data: Bytes,
        /// Gets the result of applying it.
        reply: Reply<Applied>,
    },
    /// A read barrier: answered once this node has applied everything committed before it.
    Read {
        /// ReadIndex round or lease.
        mode: ReadMode,
        /// Gets `Ok` when the local state may be read.
        reply: Reply<()>,
    },
    /// Remove a member (voter or learner) from the configuration; answered once applied.
    RemoveMember {
        /// The member's node id.
        id: NodeId,
        /// Gets the index of the configuration entry.
        reply: Reply<Index>,
    },
    /// Renew a lease (leader only; not through the log, as in etcd).
    LeaseKeepAlive {
        /// The lease.
        id: i64,
        /// Gets the lease's TTL in milliseconds, or why it cannot be renewed.
        reply: Reply<Result<u64, raftkv_kv::KvError>>,
    },
    /// Add a member as a learner (promoted once caught up, unless `held`); answered once
    /// applied.
    Join {
        /// The new member.
        member: Member,
        /// Whether it stays a learner until promoted explicitly.
        held: bool,
        /// Gets the index of the configuration entry.
        reply: Reply<Index>,
    },
    /// Make a caught-up learner a voter; answered once applied.
    Promote {
        /// The learner's node id.
        id: NodeId,
        /// Gets the index of the configuration entry.
        reply: Reply<Index>,
    },
    /// Hand leadership to a voter (leader only); answered once the transfer has started.
    TransferLeader {
        /// The voter to hand leadership to.
        target: NodeId,
        /// Gets `Ok` once the transfer started, or why it cannot.
        reply: Reply<()>,
    },
    /// Hand leadership to an up-to-date voter (if leader), then stop.
    Shutdown {
        /// Signalled once the driver has stopped.
        done: oneshot::Sender<()>,
    },
    /// The snapshot worker finished a job.
    SnapshotDone(Done),
    /// The syncer made every `Persist` through this number durable, or failed (fatal).
    Synced(Result<u64, String>),
}

/// Where an engine reply goes.
enum Waiter {
    Applied(Reply<Applied>),
    Read(Reply<()>),
    KeepAlive(Reply<Result<u64, KvError>>),
    Membership(Reply<Index>),
}

impl Waiter {
    fn answer(self, result: Result<Answer, RequestError>) {
        let mismatch = || RequestError::Unknown("internal error: unexpected answer".into());
        match self {
            Waiter::Applied(reply) => {
                let _ = reply.send(result.and_then(|a| match a {
                    Answer::Applied { applied, .. } => Ok(applied),
                    _ => Err(mismatch()),
                }));
            }
            Waiter::Read(reply) => {
                let _ = reply.send(result.and_then(|a| match a {
                    Answer::Read { .. } => Ok(()),
                    _ => Err(mismatch()),
                }));
            }
            Waiter::KeepAlive(reply) => {
                let _ = reply.send(result.and_then(|a| match a {
                    Answer::KeepAlive(renewed) => Ok(renewed),
                    _ => Err(mismatch()),
                }));
            }
            Waiter::Membership(reply) => {
                let _ = reply.send(result.and_then(|a| match a {
                    Answer::Membership { index } => Ok(index),
                    _ => Err(mismatch()),
                }));
            }
        }
    }
}

/// The driver's state.
pub struct Driver {
    engine: Replica<Wal<FsDisk>>,
    shared: Arc<Shared>,
    transport: Transport,
    addrs: PeerAddrs,
    config: ServerConfig,
    /// Clients waiting for the engine, by request id.
    waiters: HashMap<RequestId, Waiter>,
    next_request: RequestId,
    /// Hands jobs to the snapshot worker.
    snapshots: SyncSender<Job>,
    /// `Persist`s not yet written, in order: they wait while a leader's snapshot is installed.
    persists: VecDeque<Persist>,
    /// The `Persist` whose snapshot the worker is installing.
    installing: Option<u64>,
    /// The worker's report on that install, to finish in the next flush.
    installed: Option<Box<Installed>>,
    /// Hands syncs to the syncer.
    syncer: SyncSender<syncer::Job>,
    /// `Persist`s written but not yet reported, in order, with whether they wait for a sync
    /// (one with nothing to write only waits for those before it).
    awaiting_sync: VecDeque<(u64, bool)>,
    /// The syncer's latest report: every `Persist` through this number is durable.
    synced_through: u64,
    /// When leadership was last handed over for a stalled sync.
    stall_handover: Option<Instant>,
    /// A failure reported outside a flush (a snapshot that could not be written): the node stops.
    failure: Option<String>,
    /// Signalled once the driver stops after a shutdown.
    done: Option<oneshot::Sender<()>>,
    /// The leader last seen (to count leadership changes).
    last_leader: Option<NodeId>,
    /// When the snapshot being taken was asked for (for its latency).
    snapshot_started: Option<Instant>,
    /// Heartbeat round trips and replication lag, per peer.
    peers: crate::metrics::PeerObserver,
}

impl Driver {
    /// A driver over a started engine. `inputs` is the driver's own queue (the snapshot worker
    /// reports there).
    pub fn new(
        engine: Replica<Wal<FsDisk>>,
        shared: Arc<Shared>,
        transport: Transport,
        addrs: PeerAddrs,
        config: ServerConfig,
        inputs: SyncSender<Input>,
    ) -> std::io::Result<Self> {
        let writer = engine.storage().snapshot_writer();
        let syncer = syncer::spawn(
            shared.clone(),
            inputs.clone(),
            syncer::Settings {
                dir: engine.storage().dir().to_path_buf(),
                stall_file: config.debug_stall_file.clone(),
                fail_file: config.debug_fail_sync_file.clone(),
            },
        )?;
        let snapshots = snapshots::spawn(writer, inputs, config.debug_snapshot_delay)?;
        let mut driver = Driver {
            engine,
            shared,
            transport,
            addrs,
            config,
            waiters: HashMap::new(),
            next_request: 1,
            snapshots,
            persists: VecDeque::new(),
            installing: None,
            installed: None,
            syncer,
            awaiting_sync: VecDeque::new(),
            synced_through: 0,
            stall_handover: None,
            failure: None,
            done: None,
            last_leader: None,
            snapshot_started: None,
            peers: crate::metrics::PeerObserver::default(),
        };
        driver.refresh_addrs();
        driver.refresh_status();
        Ok(driver)
    }

    /// Runs until shutdown (returns `None`) or a failure (returns what failed).
    pub fn run(mut self, inputs: Receiver<Input>) -> Option<String> {
        let tick = self.config.tick;
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match inputs.recv_timeout(wait) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Every overdue tick is delivered before any input: after a pause or a long sync the
            // core must see the time that passed (its leader lease expires, CheckQuorum steps a
            // cut-off leader down) before it answers a lease read or takes a proposal.
            let now = Instant::now();
            while now >= next_tick {
                let now_ms = self.now_ms();
                self.engine.tick(now_ms);
                next_tick += tick;
            }
            self.check_stall();
            if let Some(input) = first {
                self.handle(input);
                for input in inputs.try_iter().take(INPUT_BATCH_MAX) {
                    self.handle(input);
                }
            }
            if let Err(failure) = self.flush() {
                self.fail(&failure);
                return Some(failure);
            }
            self.refresh_status();
            if self.done.is_some() && self.engine.is_stopped() {
                break;
            }
        }
        if let Some(done) = self.done.take() {
            tracing::info!("driver stopped");
            let _ = done.send(());
        }
        None
    }

    /// Milliseconds on this node's monotonic clock (lease deadlines; never replicated).
    fn now_ms(&self) -> u64 {
        self.shared.epoch.elapsed().as_millis() as u64
    }

    fn fail(&mut self, failure: &str) {
        tracing::error!(
            data_dir = %self.config.data_dir.display(),
            error = %failure,
            "the node stops and acknowledges nothing more. \
             Check the disk and the log above, then restart the node (it recovers from what was synced)"
        );
        self.shared.status().wal_error = Some(failure.to_string());
        for (_, waiter) in self.waiters.drain() {
            waiter.answer(Err(RequestError::Unknown("the node stopped".into())));
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }

    fn wait(&mut self, waiter: Waiter) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.waiters.insert(id, waiter);
        id
    }

    fn handle(&mut self, input: Input) {
        if !matches!(
            input,
            Input::Peer(_) | Input::Shutdown { .. } | Input::SnapshotDone(_) | Input::Synced(_)
        ) {
            self.shared.client_inputs.fetch_sub(1, Ordering::Relaxed);
        }
        let now_ms = self.now_ms();
        match input {
            Input::Peer(messages) => {
                self.peers
                    .received(&messages, &self.shared.metrics.observed);
                let leader = self.engine.raft().leader();
                if leader.is_some() && messages.iter().any(|m| Some(m.from) == leader) {
                    self.shared
                        .leader_contact_ms
                        .store(now_ms, Ordering::Relaxed);
                }
                for refused in self.engine.step(messages) {
                    tracing::debug!(error = %refused, "peer message refused");
                }
            }
            Input::Propose { data, reply } => {
                Metrics::bump(&self.shared.metrics.proposals);
                let id = self.wait(Waiter::Applied(reply));
                self.engine.propose(id, data);
            }
            Input::Read { mode, reply } => {
                let id = self.wait(Waiter::Read(reply));
                self.engine.read(id, mode);
            }
            Input::Join {
                member,
                held,
                reply,
            } => {
                let id = self.wait(Waiter::Membership(reply));
                // A refusal is also the reply.
                let _ = self.engine.add_member(id, member, held);
            }
            Input::Promote { id: node, reply } => {
                let id = self.wait(Waiter::Membership(reply));
                // A refusal is also the reply.
                let _ = self.engine.promote_member(id, node);
            }
            Input::RemoveMember { id: node, reply } => {
                let id = self.wait(Waiter::Membership(reply));
                self.engine.remove_member(id, node);
            }
            Input::LeaseKeepAlive { id: lease, reply } => {
                let id = self.wait(Waiter::KeepAlive(reply));
                self.engine.keep_alive(now_ms, id, lease);
            }
            Input::TransferLeader { target, reply } => {
                let _ = reply.send(self.engine.transfer_leader(target));
            }
            Input::Shutdown { done } => {
                tracing::info!("shutting down: handing leadership over if leader");
                self.engine.shutdown();
                self.done = Some(done);
            }
            Input::SnapshotDone(Done::Taken(Ok(snapshot))) => {
                self.engine.snapshot_written(snapshot)
            }
            Input::SnapshotDone(Done::Taken(Err((index, reason)))) => {
                // Fail-stop: a disk that cannot take a snapshot will not take the log for long.
                self.failure = Some(format!(
                    "writing the snapshot at index {index} failed: {reason}"
                ));
            }
            Input::SnapshotDone(Done::Installed(installed)) => self.installed = Some(installed),
            Input::Synced(Ok(through)) => self.synced_through = self.synced_through.max(through),
            Input::Synced(Err(failure)) => self.failure = Some(failure),
        }
    }

    /// Carries out the engine's output until it has none: messages, storage writes (each
    /// reported back, which may produce more), snapshots, compactions, replies, events.
    fn flush(&mut self) -> Result<(), String> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        if let Some(done) = self.installed.take() {
            self.finish_install(*done)?;
        }
        loop {
            let applied_before = self.engine.raft().raft_log().applied();
            let step_start = Instant::now();
            let output = self.engine.take_output(self.now_ms());
            if self.engine.raft().raft_log().applied() > applied_before {
                self.observe_apply(step_start.elapsed());
            }
            let produced = !output.is_empty();
            let Output {
                messages,
                persist,
                snapshot_tasks,
                compact,
                replies,
                events,
            } = output;
            // A leader's appends may leave before its own sync (they promise nothing about its
            // disk).
            self.peers.sent(&messages);
            self.transport.send(messages);
            for (id, result) in replies {
                if matches!(result, Ok(Answer::Read { .. })) {
                    Metrics::bump(&self.shared.metrics.reads);
                }
                if let Some(waiter) = self.waiters.remove(&id) {
                    waiter.answer(result);
                }
            }
            for event in events {
                self.on_event(event);
            }
            for task in snapshot_tasks {
                let index = task.metadata.index;
                if self.snapshots.try_send(Job::Take(task)).is_err() {
                    self.engine
                        .snapshot_failed(index, "the snapshot worker is busy or gone".into());
                }
            }
            for snapshot in compact {
                self.engine
                    .storage_mut()
                    .compact_written(snapshot)
                    .map_err(|e| e.to_string())?;
            }
            self.persists.extend(persist);
            let wrote = self.write_persists()?;
            let applied = self.engine.raft().raft_log().applied();
            self.shared
                .metrics
                .applied_entries
                .fetch_add(applied.saturating_sub(applied_before), Ordering::Relaxed);
            if !produced && !wrote {
                return Ok(());
            }
        }
    }

    /// Writes the queued `Persist`s in order (without syncing), hands one sync for them to the
    /// syncer, and reports those already durable; stops at one that installs a leader's
    /// snapshot: that one goes to the snapshot worker once every earlier one is reported, and
    /// the rest wait for it. Returns whether any was reported.
    fn write_persists(&mut self) -> Result<bool, String> {
        let reported = self.report_synced()?;
        let mut written = None;
        while self.installing.is_none()
            && let Some(write) = self.persists.front()
        {
            if let Some(snapshot) = &write.snapshot {
                if !self.awaiting_sync.is_empty() {
                    break;
                }
                let job = Job::Install {
                    seq: write.seq,
                    snapshot: snapshot.clone(),
                    limits: self.shared.state().limits().clone(),
                };
                self.snapshots
                    .try_send(job)
                    .map_err(|_| "the snapshot worker is gone".to_string())?;
                self.installing = Some(write.seq);
                break;
            }
            let Some(write) = self.persists.pop_front() else {
                break;
            };
            if write.is_empty() {
                self.awaiting_sync.push_back((write.seq, false));
                continue;
            }
            let wal = self.engine.storage_mut();
            wal.append(&write.entries).map_err(|e| e.to_string())?;
            if let Some(hard_state) = write.hard_state {
                wal.set_hard_state(hard_state).map_err(|e| e.to_string())?;
            }
            self.awaiting_sync.push_back((write.seq, true));
            written = Some(write.seq);
        }
        if let Some(through) = written {
            let file = self
                .engine
                .storage_mut()
                .write_for_sync()
                .map_err(|e| e.to_string())?;
            self.syncer
                .send(syncer::Job { file, through })
                .map_err(|_| "the write-ahead log syncer is gone".to_string())?;
        }
        Ok(self.report_synced()? || reported)
    }

    /// Reports to the engine, in order, every written `Persist` the syncer made durable (and
    /// those with nothing to write right behind them).
    fn report_synced(&mut self) -> Result<bool, String> {
        let mut reported = false;
        while let Some(&(seq, needs_sync)) = self.awaiting_sync.front() {
            if needs_sync && seq > self.synced_through {
                break;
            }
            self.awaiting_sync.pop_front();
            self.engine
                .persisted(self.now_ms(), seq, None)
                .map_err(|e| e.to_string())?;
            reported = true;
        }
        Ok(reported)
    }

    /// A leader whose sync has run past the stall bound hands leadership over, again after
    /// every further bound while the stall lasts.
    fn check_stall(&mut self) {
        let bound = self.config.tick * self.config.disk_stall_ticks;
        if self
            .shared
            .sync_running_for()
            .is_none_or(|running| running <= bound)
        {
            self.stall_handover = None;
            return;
        }
        if self.stall_handover.is_some_and(|at| at.elapsed() <= bound) {
            return;
        }
        self.stall_handover = Some(Instant::now());
        if let Some(target) = self.engine.disk_stalled() {
            tracing::warn!(
                target,
                "the disk has not finished a sync for over {bound:?}: handing leadership over"
            );
        }
    }

    /// The worker wrote and decoded the leader's snapshot: record it in the WAL, write the rest
    /// of its `Persist`, and hand the state to the engine.
    fn finish_install(&mut self, installed: Installed) -> Result<(), String> {
        let Installed {
            seq,
            snapshot,
            written,
            restored,
        } = installed;
        written?;
        let write = self
            .persists
            .pop_front()
            .filter(|w| w.seq == seq && self.installing == Some(seq))
            .ok_or_else(|| format!("internal error: no install of Persist {seq} under way"))?;
        self.installing = None;
        self.engine
            .storage_mut()
            .apply_snapshot_written(snapshot)
            .map_err(|e| e.to_string())?;
        if write.hard_state.is_some() || !write.entries.is_empty() {
            self.save(write.hard_state, &write.entries)?;
        }
        self.engine
            .persisted(self.now_ms(), seq, Some(restored))
            .map_err(|e| e.to_string())
    }

    /// One durable write on the WAL, timed for `/metrics` and the disk-stall check.
    fn save(
        &mut self,
        hard_state: Option<raftkv_raft::HardState>,
        entries: &[raftkv_raft::Entry],
    ) -> Result<(), String> {
        if let Some(fail) = &self.config.debug_fail_sync_file
            && fail.exists()
        {
            return Err(format!(
                "write-ahead log sync failed (injected: {} exists)",
                fail.display()
            ));
        }
        let sync_start = Instant::now();
        let started = self.shared.epoch.elapsed().as_millis().max(1) as u64;
        self.shared
            .sync_started_ms
            .store(started, Ordering::Relaxed);
        if let Some(stall) = &self.config.debug_stall_file {
            while stall.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let saved = self.engine.storage_mut().save(hard_state, entries, None);
        self.shared.sync_started_ms.store(0, Ordering::Relaxed);
        saved.map_err(|e| e.to_string())?;
        self.shared.metrics.record_wal_sync(sync_start.elapsed());
        Ok(())
    }

    /// Records an apply step's latency; a slow one is counted and logged.
    fn observe_apply(&self, took: Duration) {
        let observed = &self.shared.metrics.observed;
        observed.apply_seconds.observe(took.as_secs_f64());
        if took > SLOW_APPLY {
            observed.slow_applies.inc();
            tracing::warn!(?took, "applying entries took too long");
        }
    }

    /// Publishes the store's lock sessions index, waking the session reads blocked on it only
    /// when it changed.
    fn publish_sessions_index(&self) {
        let index = self.shared.state().kv.lock_sessions_index();
        self.shared.sessions_index.send_if_modified(|published| {
            let changed = *published != index;
            *published = index;
            changed
        });
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::RoleChanged { role, term, leader } => {
                tracing::info!(?role, term, ?leader, "role changed");
                if leader != self.last_leader {
                    self.last_leader = leader;
                    self.shared.metrics.observed.leader_changes.inc();
                }
            }
            Event::LeasesPromoted { extend_ms } => {
                tracing::debug!(extend_ms, "new leader extended every lease");
            }
            Event::LeaseRevokeProposed { lease, entry } => {
                tracing::debug!(lease, ?entry, "lease expired; revoke proposed");
            }
            Event::Applied(_) => {}
            Event::AppliedTo { .. } => {
                self.shared.applied.notify_waiters();
                self.publish_sessions_index();
            }
            Event::MembershipApplied { index, conf } => tracing::info!(
                index,
                voters = ?conf.voters,
                outgoing = ?conf.voters_outgoing,
                learners = ?conf.learners,
                "membership changed"
            ),
            Event::RegistryChanged => self.refresh_addrs(),
            Event::Undecodable { index } => {
                tracing::warn!(index, "undecodable entry applied as a no-op");
            }
            Event::HashCheckpoint { index, view } => crate::corrupt_check::hash_in_background(
                index,
                *view,
                self.shared.checkpoints.clone(),
                self.config.debug_diverge_file.clone(),
            ),
            Event::SnapshotInstalled { index, term, .. } => {
                Metrics::bump(&self.shared.metrics.snapshots_installed);
                self.shared.applied.notify_waiters();
                self.publish_sessions_index();
                tracing::info!(index, term, "installed snapshot from the leader");
            }
            Event::Recovered { index, term, .. } => {
                tracing::info!(index, term, "started from the snapshot in storage");
            }
            Event::SnapshotRequested { index, .. } => {
                self.snapshot_started = Some(Instant::now());
                tracing::debug!(index, "snapshot requested");
            }
            Event::SnapshotTaken { index, term, bytes } => {
                Metrics::bump(&self.shared.metrics.snapshots_taken);
                if let Some(started) = self.snapshot_started.take() {
                    self.shared
                        .metrics
                        .observed
                        .snapshot_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                tracing::info!(index, term, bytes, "took snapshot and compacted the log");
            }
            Event::SnapshotSkipped { index, reason } => {
                tracing::warn!(index, reason, "snapshot skipped");
            }
            Event::Proposed {
                what,
                refused: None,
            } => tracing::info!("proposed {what}"),
            Event::Proposed {
                what,
                refused: Some(error),
            } => tracing::debug!(error, "{what} deferred"),
        }
    }

    /// Rebuilds the peer address book from the registry.
    fn refresh_addrs(&mut self) {
        let state = self.shared.state();
        let mut addrs = self.addrs.write().unwrap_or_else(|p| p.into_inner());
        for member in state.registry.members() {
            if let Ok(addr) = host_port(&member.peer_url) {
                addrs.insert(member.id, addr);
            }
        }
    }

    fn refresh_status(&mut self) {
        let raft = self.engine.raft();
        let log = raft.raft_log();
        let conf = raft.tracker().conf_state();
        let mut status = self.shared.status();
        status.id = raft.id();
        status.role = match raft.role() {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
        .to_string();
        status.term = raft.term();
        status.leader = raft.leader();
        status.commit_index = log.committed();
        status.applied_index = log.applied();
        status.snapshot_index = self.engine.snapshot_index();
        status.last_index = log.last_index();
        status.voters = conf.voters.iter().copied().collect();
        status.voters_outgoing = conf.voters_outgoing.iter().copied().collect();
        status.learners = conf.learners.iter().copied().collect();
        drop(status);
        let observed = &self.shared.metrics.observed;
        if raft.role() == Role::Leader {
            let last = log.last_index();
            for id in raft.tracker().ids().filter(|&id| id != raft.id()) {
                if let Some(progress) = raft.tracker().get(id) {
                    let lag = last.saturating_sub(progress.match_index);
                    self.peers.lag(id, lag, observed);
                }
            }
        } else {
            self.peers.not_leading(observed);
        }
    }
}
