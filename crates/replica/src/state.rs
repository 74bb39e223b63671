//! The replicated state a node applies committed entries to: the key-value store and the member
//! registry, and the entry payload format that addresses them.
//!
//! An entry's payload is a [`Command`]: a key-value request (encoded by `raftkv-kv`, passed through
//! untouched), a member publishing its addresses, or a learner held back from promotion. Empty payloads are the leaders' no-op entries.
//! Configuration entries update the registry (removed members are forgotten and refused).
//!
//! Snapshots are taken in two steps so the node loop never waits for one: [`State::view`] takes a
//! consistent copy-on-write view in one short step, and [`StateView::encode`] serializes it later,
//! on any thread. [`decode`] turns snapshot data back into a state, off the loop as well, and
//! [`State::install`] swaps it in.
//!
//! Invariant: applying the same entries in the same order gives the same state (and the same
//! [`State::digest`]) on every node; a payload this node cannot decode is applied as a no-op on
//! every node alike ([`Applied::Undecodable`]), never a panic.

use bytes::Bytes;
use prost::Message as _;
use raftkv_kv::{KvStore, Limits, Response, SnapshotView};
use raftkv_raft::{ConfState, Entry, EntryKind, Index, NodeId};

use crate::alarms::{Alarm, AlarmChange, Alarms};
use crate::auth::{AuthChange, AuthError, AuthSnapshot, AuthStore};
use crate::error::ReplicaError;
use crate::members::{Member, Registry};

/// The key-value limits every node runs with (they must agree: apply-time checks are part of the
/// replicated behaviour). The store's defaults, with less read out of history for each watch a
/// compaction overtakes (`watch_pending_bytes_max`), as a server holds up to `watches_max`.
pub fn limits() -> Limits {
    Limits {
        watch_pending_bytes_max: 1024 * 1024,
        ..Limits::default()
    }
}

/// Format version of snapshot data.
pub const SNAPSHOT_VERSION: u32 = 1;

/// An entry payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    /// What to do.
    #[prost(oneof = "CommandOp", tags = "1, 2, 3, 4, 5, 6")]
    pub op: Option<CommandOp>,
}

/// The kinds of command.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum CommandOp {
    /// An encoded `raftkv_kv::Request`.
    #[prost(bytes = "bytes", tag = "1")]
    Kv(Bytes),
    /// A member's name and addresses (on join, and when a member starts with new addresses).
    #[prost(message, tag = "2")]
    Publish(Member),
    /// A learner to hold back from promotion (added as a learner on purpose), by node id.
    #[prost(uint64, tag = "3")]
    HoldLearner(u64),
    /// An alarm raised or cleared.
    #[prost(message, tag = "4")]
    Alarm(AlarmChange),
    /// A corruption-check point: every member hashes its state as of this entry (the leader
    /// that asked, by node id).
    #[prost(uint64, tag = "5")]
    HashCheck(u64),
    /// A change of users, roles, permissions or whether authentication is enabled.
    #[prost(message, tag = "6")]
    Auth(AuthChange),
}

impl Command {
    /// The payload of a key-value request.
    pub fn kv(request: Bytes) -> Bytes {
        Command {
            op: Some(CommandOp::Kv(request)),
        }
        .encode_to_vec()
        .into()
    }

    /// The encoded key-value request inside an entry payload, if it carries one.
    pub fn kv_request(payload: &Bytes) -> Option<Bytes> {
        match Command::decode(payload.clone()) {
            Ok(Command {
                op: Some(CommandOp::Kv(request)),
            }) => Some(request),
            _ => None,
        }
    }

    /// The payload of a member publishing its addresses.
    pub fn publish(member: Member) -> Bytes {
        Command {
            op: Some(CommandOp::Publish(member)),
        }
        .encode_to_vec()
        .into()
    }

    /// The payload raising (`activate`) or clearing `alarm`.
    pub fn alarm(activate: bool, alarm: Alarm) -> Bytes {
        Command {
            op: Some(CommandOp::Alarm(AlarmChange {
                activate,
                alarm: Some(alarm),
            })),
        }
        .encode_to_vec()
        .into()
    }

    /// The payload of a corruption-check point asked for by `leader`.
    pub fn hash_check(leader: NodeId) -> Bytes {
        Command {
            op: Some(CommandOp::HashCheck(leader)),
        }
        .encode_to_vec()
        .into()
    }

    /// The payload of an auth change.
    pub fn auth(change: AuthChange) -> Bytes {
        Command {
            op: Some(CommandOp::Auth(change)),
        }
        .encode_to_vec()
        .into()
    }

    /// The payload holding learner `id` back from promotion.
    pub fn hold_learner(id: NodeId) -> Bytes {
        Command {
            op: Some(CommandOp::HoldLearner(id)),
        }
        .encode_to_vec()
        .into()
    }
}

/// `StateSnapshot::kv`'s field number.
const KV_FIELD_TAG: u32 = 4;
/// The most bytes of a field key of `KV_FIELD_TAG` and a length.
const KV_FIELD_PREFIX_BYTES_MAX: usize = 1 + 10;

/// The whole state in a snapshot.
#[derive(Clone, PartialEq, prost::Message)]
struct StateSnapshot {
    /// [`SNAPSHOT_VERSION`].
    #[prost(uint32, tag = "1")]
    version: u32,
    /// The registry's members.
    #[prost(message, repeated, tag = "2")]
    members: Vec<Member>,
    /// The registry's removed ids.
    #[prost(uint64, repeated, tag = "3")]
    removed: Vec<u64>,
    /// The key-value store's own snapshot stream (field number `KV_FIELD_TAG`).
    #[prost(bytes = "bytes", tag = "4")]
    kv: Bytes,
    /// Members of the configuration at the snapshot's index.
    #[prost(uint64, repeated, tag = "5")]
    conf_members: Vec<u64>,
    /// The registry's held learners.
    #[prost(uint64, repeated, tag = "6")]
    held: Vec<u64>,
    /// The raised alarms.
    #[prost(message, repeated, tag = "7")]
    alarms: Vec<Alarm>,
    /// Users, roles and permissions.
    #[prost(message, optional, tag = "8")]
    auth: Option<AuthSnapshot>,
}

/// What applying one entry produced.
#[derive(Clone, Debug)]
pub enum Applied {
    /// A key-value request's response.
    Kv(Response),
    /// A member's record changed (its addresses, or a hold on its promotion).
    Published,
    /// A configuration took effect in the registry.
    Conf,
    /// A leader's no-op entry.
    Noop,
    /// A payload no node can decode, applied as a no-op everywhere.
    Undecodable,
    /// An alarm was raised or cleared.
    Alarm,
    /// A write refused while `NOSPACE` is raised (nothing changed).
    NoSpace,
    /// A key-value request refused while `CORRUPT` is raised (nothing changed).
    Corrupt,
    /// A corruption-check point: the state as of this entry is to be hashed.
    HashCheck,
    /// An auth change: applied, or refused (nothing changed).
    Auth(Result<(), AuthError>),
}

/// The replicated state.
pub struct State {
    /// The key-value store.
    pub kv: KvStore,
    /// Who is in the cluster and where.
    pub registry: Registry,
    /// The raised alarms.
    pub alarms: Alarms,
    /// Users, roles and permissions.
    pub auth: AuthStore,
    /// Key-value limits (for restores).
    limits: Limits,
    /// Last applied index.
    applied: Index,
}

impl State {
    /// An empty state. The registry starts empty on every node alike and fills through publish
    /// entries, so it is the same on every node at every index.
    pub fn new(limits: Limits) -> Self {
        State {
            kv: KvStore::new(limits.clone()),
            registry: Registry::default(),
            alarms: Alarms::default(),
            auth: AuthStore::default(),
            limits,
            applied: 0,
        }
    }

    /// Last applied index.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The key-value limits the state runs with (a decoded snapshot must get the same).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) -> Applied {
        assert!(
            entry.index > self.applied,
            "entry {} applied after {}",
            entry.index,
            self.applied
        );
        self.applied = entry.index;
        if let EntryKind::ConfChange(conf) = &entry.kind {
            self.apply_conf(conf);
            return Applied::Conf;
        }
        if entry.data.is_empty() {
            return Applied::Noop;
        }
        match Command::decode(entry.data.clone()) {
            Ok(Command {
                op: Some(CommandOp::Kv(_)),
            }) if self.alarms.corrupt() => Applied::Corrupt,
            Ok(Command {
                op: Some(CommandOp::Kv(request)),
            }) if self.alarms.no_space() && needs_space(&request) => Applied::NoSpace,
            Ok(Command {
                op: Some(CommandOp::Kv(request)),
            }) => Applied::Kv(self.kv.apply(entry.index, &request)),
            Ok(Command {
                op: Some(CommandOp::Alarm(change)),
            }) => {
                self.alarms.apply(&change);
                Applied::Alarm
            }
            Ok(Command {
                op: Some(CommandOp::Publish(member)),
            }) => {
                self.registry.upsert(member);
                Applied::Published
            }
            Ok(Command {
                op: Some(CommandOp::HashCheck(_)),
            }) => Applied::HashCheck,
            Ok(Command {
                op: Some(CommandOp::Auth(change)),
            }) => Applied::Auth(self.auth.apply(&change)),
            Ok(Command {
                op: Some(CommandOp::HoldLearner(id)),
            }) => {
                self.registry.hold(id);
                Applied::Published
            }
            Ok(Command { op: None }) | Err(_) => Applied::Undecodable,
        }
    }

    fn apply_conf(&mut self, conf: &ConfState) {
        self.registry.apply_conf(conf);
    }

    /// A hash of the replicated state (store, registry, alarms, auth): equal on every node at the same
    /// applied index.
    pub fn digest(&self) -> u64 {
        self.kv.state_hash()
            ^ registry_hash(&self.registry)
            ^ alarms_hash(&self.alarms)
            ^ self.auth.hash()
    }

    /// A consistent view of the state at the applied index, taken in one short step (the key
    /// index is shared copy-on-write); encode it later with [`StateView::encode`].
    pub fn view(&self) -> StateView {
        StateView {
            applied: self.applied,
            kv: self.kv.snapshot_view(),
            registry: self.registry.clone(),
            alarms: self.alarms.clone(),
            auth: Box::new(self.auth.clone()),
        }
    }

    /// Replaces the state with one decoded from a snapshot; watches carry over (they see the
    /// snapshot's revision as their next event, or `Compacted`).
    pub fn install(&mut self, mut restored: State) {
        restored.kv.adopt_watches(&mut self.kv);
        *self = restored;
    }
}

/// A consistent view of the replicated state at one applied index, cheap to take and `Send`, so
/// encoding it can happen away from the node loop.
#[derive(Clone, Debug)]
pub struct StateView {
    /// The state's applied index (the store's own may be lower: it counts only its requests).
    applied: Index,
    /// The store's view.
    kv: SnapshotView,
    /// The registry at the same index.
    registry: Registry,
    /// The alarms at the same index.
    alarms: Alarms,
    /// The auth store at the same index (boxed: small views move through queues).
    auth: Box<AuthStore>,
}

impl StateView {
    /// The applied index the view was taken at.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The [`State::digest`] of the state the view shows.
    pub fn digest(&self) -> u64 {
        self.kv.state_hash()
            ^ registry_hash(&self.registry)
            ^ alarms_hash(&self.alarms)
            ^ self.auth.hash()
    }

    /// The view as snapshot data (proportional to the store's size: call it off the node loop).
    ///
    /// The store's stream, nearly all of it, is written once into the buffer that is returned:
    /// the other fields are encoded first (they are small), room for them and for the store
    /// field's key and length is left at the front, and they are put there once the store's
    /// length is known (protobuf fields may come in any order). So a snapshot of any size takes
    /// its own size in memory, not twice that.
    pub fn encode(&self) -> Bytes {
        let head = StateSnapshot {
            version: SNAPSHOT_VERSION,
            members: self.registry.members().cloned().collect(),
            removed: self.registry.removed().collect(),
            kv: Bytes::new(),
            conf_members: self.registry.conf_members().collect(),
            held: self.registry.held().collect(),
            alarms: self.alarms.list(),
            auth: Some(self.auth.snapshot()),
        }
        .encode_to_vec();
        let room = head.len() + KV_FIELD_PREFIX_BYTES_MAX;
        let mut buf = vec![0u8; room];
        // Writing into a Vec cannot fail.
        self.kv
            .write_to(&mut buf)
            .expect("writing a snapshot into memory");
        let mut prefix = head;
        prost::encoding::encode_key(
            KV_FIELD_TAG,
            prost::encoding::WireType::LengthDelimited,
            &mut prefix,
        );
        prost::encoding::encode_varint((buf.len() - room) as u64, &mut prefix);
        let start = room - prefix.len();
        buf[start..room].copy_from_slice(&prefix);
        Bytes::from(buf).slice(start..)
    }
}

/// The state snapshot data at `index` holds, or why it cannot be read (the node must not go on
/// without it: a fatal error that names the index and the reason).
pub fn decode(index: Index, data: &Bytes, limits: Limits) -> Result<State, ReplicaError> {
    let refuse = |reason: String| ReplicaError::Restore { index, reason };
    let snapshot = StateSnapshot::decode(data.clone()).map_err(|e| refuse(e.to_string()))?;
    if snapshot.version != SNAPSHOT_VERSION {
        return Err(refuse(format!(
            "format version {}, expected {SNAPSHOT_VERSION}",
            snapshot.version
        )));
    }
    let kv = KvStore::restore(&mut &snapshot.kv[..], limits.clone())
        .map_err(|e| refuse(e.to_string()))?;
    let mut registry = Registry::new(snapshot.members);
    for id in snapshot.removed {
        registry.mark_removed(id);
    }
    registry.set_conf_members(snapshot.conf_members);
    for id in snapshot.held {
        registry.hold(id);
    }
    Ok(State {
        kv,
        registry,
        alarms: Alarms::from_list(snapshot.alarms),
        auth: snapshot.auth.map(AuthStore::restore).unwrap_or_default(),
        limits,
        applied: index,
    })
}

/// Whether the encoded key-value request may need more space (an undecodable one is left to
/// the store, which refuses it).
fn needs_space(request: &Bytes) -> bool {
    raftkv_kv::Request::decode(&request[..]).is_ok_and(|r| r.needs_space())
}

/// A hash of the raised alarms (0 when none, so states without alarms hash as before).
fn alarms_hash(alarms: &Alarms) -> u64 {
    alarms.list().iter().fold(0, |hash, alarm| {
        (hash ^ alarm.member ^ (alarm.kind as u64).rotate_left(32))
            .wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A hash of the registry (FNV-1a over its members, removed ids, configuration members and held
/// learners).
fn registry_hash(registry: &Registry) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for member in registry.members() {
        mix(&member.encode_to_vec());
    }
    for id in registry.removed() {
        mix(b"r");
        mix(&id.to_le_bytes());
    }
    for id in registry.conf_members() {
        mix(b"c");
        mix(&id.to_le_bytes());
    }
    for id in registry.held() {
        mix(b"h");
        mix(&id.to_le_bytes());
    }
    hash
}

#[cfg(test)]
mod tests {
    use raftkv_kv::Request;

    use super::*;

    #[test]
    fn a_snapshot_decodes_to_the_state_it_was_taken_of() {
        let mut state = State::new(limits());
        let entries = (1..=50u64).map(|i| {
            let request = Request::put(
                Bytes::from(format!("key-{i}")),
                Bytes::from(vec![i as u8; 300]),
            );
            Entry::new(i, 1, Command::kv(request.encode_to_vec().into()))
        });
        for entry in entries {
            state.apply(&entry);
        }
        let member = Member::unstarted(7, "http://127.0.0.1:7007".into());
        state.apply(&Entry::new(51, 1, Command::publish(member)));
        let data = state.view().encode();
        let restored = decode(51, &data, limits()).unwrap();
        assert_eq!(restored.digest(), state.digest());
        // Nothing but the message's fields, each once (the store's moved to the end).
        let message = StateSnapshot::decode(data.clone()).unwrap();
        assert_eq!(message.encoded_len(), data.len());
        assert_eq!(message.members.len(), 1);
    }

    fn kv_entry(index: Index, request: Request) -> Entry {
        Entry::new(index, 1, Command::kv(request.encode_to_vec().into()))
    }

    fn alarm_entry(index: Index, activate: bool, kind: i32) -> Entry {
        let alarm = Alarm { member: 1, kind };
        Entry::new(index, 1, Command::alarm(activate, alarm))
    }

    #[test]
    fn writes_needing_space_are_refused_while_nospace_is_raised_deletes_are_not() {
        use crate::alarms::NOSPACE;
        let mut state = State::new(limits());
        state.apply(&kv_entry(1, Request::put("a", "1")));
        state.apply(&alarm_entry(2, true, NOSPACE));
        assert!(matches!(
            state.apply(&kv_entry(3, Request::put("b", "2"))),
            Applied::NoSpace
        ));
        assert!(matches!(
            state.apply(&kv_entry(4, Request::delete("a"))),
            Applied::Kv(_)
        ));
        state.apply(&alarm_entry(5, false, NOSPACE));
        assert!(matches!(
            state.apply(&kv_entry(6, Request::put("b", "2"))),
            Applied::Kv(_)
        ));
    }

    #[test]
    fn every_key_value_request_is_refused_while_corrupt_is_raised() {
        use crate::alarms::CORRUPT;
        let mut state = State::new(limits());
        state.apply(&kv_entry(1, Request::put("a", "1")));
        state.apply(&alarm_entry(2, true, CORRUPT));
        let before = state.kv.state_hash();
        assert!(matches!(
            state.apply(&kv_entry(3, Request::put("b", "2"))),
            Applied::Corrupt
        ));
        assert!(matches!(
            state.apply(&kv_entry(4, Request::delete("a"))),
            Applied::Corrupt
        ));
        assert_eq!(state.kv.state_hash(), before);
        state.apply(&alarm_entry(5, false, CORRUPT));
        assert!(matches!(
            state.apply(&kv_entry(6, Request::put("b", "2"))),
            Applied::Kv(_)
        ));
    }

    #[test]
    fn an_auth_change_is_part_of_the_digest_and_of_snapshots() {
        use crate::auth::{AuthOp, User};
        let mut state = State::new(limits());
        let before = state.digest();
        let user = AuthOp::UserAdd(User {
            name: "alice".into(),
            password_hash: "hash".into(),
            roles: Vec::new(),
        });
        let change = AuthChange { op: Some(user) };
        let applied = state.apply(&Entry::new(1, 1, Command::auth(change.clone())));
        assert!(matches!(applied, Applied::Auth(Ok(()))));
        assert_ne!(state.digest(), before);
        let again = state.apply(&Entry::new(2, 1, Command::auth(change)));
        assert!(matches!(
            again,
            Applied::Auth(Err(AuthError::UserAlreadyExists))
        ));
        let restored = decode(2, &state.view().encode(), limits()).unwrap();
        assert_eq!(restored.auth, state.auth);
        assert_eq!(restored.digest(), state.digest());
    }

    #[test]
    fn a_hash_check_point_changes_nothing_but_asks_for_a_hash() {
        let mut state = State::new(limits());
        state.apply(&kv_entry(1, Request::put("a", "1")));
        let before = state.digest();
        let applied = state.apply(&Entry::new(2, 1, Command::hash_check(1)));
        assert!(matches!(applied, Applied::HashCheck));
        assert_eq!(state.digest(), before);
    }
}
