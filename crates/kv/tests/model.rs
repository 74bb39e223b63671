//! The store against a deliberately plain model: a map of key → full history (never compacted,
//! only the compacted revision is remembered), leases as id → TTL, keys attached by their current
//! value. Random sequences of puts, deletes, ranges, transactions, compactions and lease ops must
//! give the same responses (results and revisions), the same reads at every retained revision,
//! and the same state after a snapshot round trip.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use raftkv_kv::*;

const KEYS: &[&str] = &["a", "aa", "ab", "b", "ba", "c", "d", "e"];
const RANGE_BYTES_MAX: u64 = 120;

fn limits() -> Limits {
    Limits {
        range_bytes_max: RANGE_BYTES_MAX,
        ..Limits::default()
    }
}

// ---------- the model ----------

#[derive(Debug, Clone, PartialEq)]
struct Mkv {
    value: Bytes,
    create: i64,
    version: i64,
    lease: i64,
}

#[derive(Debug, Default, Clone)]
struct Model {
    /// key → (revision, Some(value) or None for a delete), all of history.
    history: BTreeMap<Bytes, Vec<(i64, Option<Mkv>)>>,
    revision: i64,
    compacted: i64,
    leases: BTreeMap<i64, u64>,
    index: u64,
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == b"\0" {
        key >= start
    } else {
        key >= start && key < end
    }
}

fn same(a: &Result<Reply, KvError>, b: &Result<Reply, KvError>) -> bool {
    match (a, b) {
        (Err(KvError::InvalidRequest(_)), Err(KvError::InvalidRequest(_))) => true,
        _ => a == b,
    }
}

impl Model {
    /// Bytes of the live keys and their values (what a storage quota limits).
    fn live_bytes(&self) -> u64 {
        self.history
            .iter()
            .filter_map(|(key, h)| h.last()?.1.as_ref().map(|m| key.len() + m.value.len()))
            .sum::<usize>() as u64
    }

    fn get(&self, key: &[u8], rev: i64) -> Option<&Mkv> {
        let h = self.history.get(key)?;
        h.iter()
            .rev()
            .find(|(r, _)| *r <= rev)
            .and_then(|(_, v)| v.as_ref())
    }

    fn kv(key: &Bytes, m: &Mkv, rev: i64, keys_only: bool) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: m.create,
            mod_revision: rev,
            version: m.version,
            value: if keys_only {
                Bytes::new()
            } else {
                m.value.clone()
            },
            lease: m.lease,
            flags: 0,
            lock_index: 0,
            session: 0,
        }
    }

    fn mod_rev(&self, key: &[u8], rev: i64) -> i64 {
        self.history[key]
            .iter()
            .rev()
            .find(|(r, _)| *r <= rev)
            .unwrap()
            .0
    }

    /// Live keys in range at `rev`.
    fn scan(&self, start: &[u8], end: &[u8], rev: i64) -> Vec<(Bytes, Mkv, i64)> {
        self.history
            .keys()
            .filter(|k| in_range(k, start, end))
            .filter_map(|k| {
                self.get(k, rev)
                    .map(|m| (k.clone(), m.clone(), self.mod_rev(k, rev)))
            })
            .collect()
    }

    fn read_rev(&self, rev: i64) -> Result<i64, KvError> {
        if rev == 0 {
            Ok(i64::MAX)
        } else if rev > self.revision {
            Err(KvError::FutureRevision {
                revision: rev,
                current_revision: self.revision,
            })
        } else if rev < self.compacted {
            Err(KvError::Compacted {
                revision: rev,
                compacted_revision: self.compacted,
            })
        } else {
            Ok(rev)
        }
    }

    fn range(&self, req: &RangeRequest, used: &mut u64) -> Result<RangeResponse, KvError> {
        if req.revision < 0 {
            return Err(KvError::InvalidRequest(String::new()));
        }
        let rev = self.read_rev(req.revision)?;
        let mut out = RangeResponse {
            revision: self.revision,
            ..Default::default()
        };
        for (key, m, mod_rev) in self.scan(&req.key, &req.range_end, rev) {
            out.count += 1;
            if req.count_only {
                continue;
            }
            if req.limit != 0 && out.kvs.len() as u64 >= req.limit {
                out.more = true;
                continue;
            }
            *used += key.len() as u64
                + if req.keys_only {
                    0
                } else {
                    m.value.len() as u64
                }
                + 32;
            if *used > RANGE_BYTES_MAX {
                return Err(KvError::RangeTooLarge {
                    bytes: *used,
                    max: RANGE_BYTES_MAX,
                });
            }
            out.kvs.push(Model::kv(&key, &m, mod_rev, req.keys_only));
        }
        Ok(out)
    }

    fn write(&mut self, key: &Bytes, value: Option<Mkv>, rev: i64) {
        self.history
            .entry(key.clone())
            .or_default()
            .push((rev, value));
    }

    fn put(&mut self, put: &PutRequest, rev: i64) -> PutResponse {
        let prev = self.get(&put.key, i64::MAX).cloned();
        let prev_kv = prev
            .as_ref()
            .map(|p| Model::kv(&put.key, p, self.mod_rev(&put.key, i64::MAX), false));
        let new = Mkv {
            value: put.value.clone(),
            create: prev.as_ref().map_or(rev, |p| p.create),
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease: put.lease,
        };
        self.write(&put.key, Some(new), rev);
        PutResponse {
            prev_kv: prev_kv.filter(|_| put.prev_kv),
        }
    }

    fn delete(&mut self, d: &DeleteRangeRequest, rev: i64) -> DeleteRangeResponse {
        let victims = self.scan(&d.key, &d.range_end, i64::MAX);
        for (key, _, _) in &victims {
            self.write(key, None, rev);
        }
        DeleteRangeResponse {
            deleted: victims.len() as u64,
            prev_kvs: if d.prev_kv {
                victims
                    .iter()
                    .map(|(k, m, r)| Model::kv(k, m, *r, false))
                    .collect()
            } else {
                vec![]
            },
        }
    }

    fn compare(&self, c: &Compare) -> bool {
        let live = self.scan(&c.key, &c.range_end, i64::MAX);
        let op = CompareOp::try_from(c.op).unwrap();
        let check = |m: Option<(&Mkv, i64)>| {
            let ord = match c.target.as_ref().unwrap() {
                CompareTarget::Version(v) => m.map_or(0, |m| m.0.version).cmp(v),
                CompareTarget::CreateRevision(v) => m.map_or(0, |m| m.0.create).cmp(v),
                CompareTarget::ModRevision(v) => m.map_or(0, |m| m.1).cmp(v),
                CompareTarget::Lease(v) => m.map_or(0, |m| m.0.lease).cmp(v),
                // The model's keys are never locked (lock sessions are tested in `locks`).
                CompareTarget::Session(v) => 0.cmp(v),
                CompareTarget::Value(v) => match m {
                    Some(m) => m.0.value.cmp(v),
                    None => return false,
                },
            };
            match op {
                CompareOp::Equal => ord.is_eq(),
                CompareOp::NotEqual => ord.is_ne(),
                CompareOp::Greater => ord.is_gt(),
                CompareOp::Less => ord.is_lt(),
            }
        };
        if live.is_empty() {
            check(None)
        } else {
            live.iter().all(|(_, m, r)| check(Some((m, *r))))
        }
    }

    /// Undo every write at `rev`.
    fn undo(&mut self, rev: i64) {
        for h in self.history.values_mut() {
            if h.last().is_some_and(|(r, _)| *r == rev) {
                h.pop();
            }
        }
        self.history.retain(|_, h| !h.is_empty());
    }

    fn changed(&self, rev: i64) -> bool {
        self.history
            .values()
            .any(|h| h.last().is_some_and(|(r, _)| *r == rev))
    }

    fn txn(&mut self, txn: &TxnRequest) -> Result<TxnResponse, KvError> {
        // Validation covers both branches: no key written twice, no negative revision.
        for branch in [&txn.success, &txn.failure] {
            let ops: Vec<TxnOp> = branch.iter().map(|o| o.op.clone().unwrap()).collect();
            let puts: Vec<&Bytes> = ops
                .iter()
                .filter_map(|o| {
                    if let TxnOp::Put(p) = o {
                        Some(&p.key)
                    } else {
                        None
                    }
                })
                .collect();
            for (i, k) in puts.iter().enumerate() {
                if puts[..i].contains(k) {
                    return Err(KvError::InvalidRequest(String::new()));
                }
                for o in &ops {
                    if let TxnOp::DeleteRange(d) = o
                        && in_range(k, &d.key, &d.range_end)
                    {
                        return Err(KvError::InvalidRequest(String::new()));
                    }
                }
            }
            if ops
                .iter()
                .any(|o| matches!(o, TxnOp::Range(r) if r.revision < 0))
            {
                return Err(KvError::InvalidRequest(String::new()));
            }
        }
        let succeeded = txn.compare.iter().all(|c| self.compare(c));
        let ops: Vec<TxnOp> = (if succeeded {
            &txn.success
        } else {
            &txn.failure
        })
        .iter()
        .map(|o| o.op.clone().unwrap())
        .collect();
        for o in &ops {
            match o {
                TxnOp::Put(p) if p.lease != 0 && !self.leases.contains_key(&p.lease) => {
                    return Err(KvError::LeaseNotFound { id: p.lease });
                }
                TxnOp::Range(r) if r.revision != 0 => {
                    self.read_rev(r.revision)?;
                }
                _ => {}
            }
        }
        let rev = self.revision + 1;
        let mut used = 0;
        let mut responses = vec![];
        for o in &ops {
            let r = match o {
                TxnOp::Put(p) => TxnOpResponse::Put(self.put(p, rev)),
                TxnOp::DeleteRange(d) => TxnOpResponse::DeleteRange(self.delete(d, rev)),
                TxnOp::Range(r) => match self.range(r, &mut used) {
                    Ok(resp) => TxnOpResponse::Range(resp),
                    Err(e) => {
                        self.undo(rev);
                        return Err(e);
                    }
                },
                TxnOp::Txn(_) => unreachable!("the model's transactions are flat (`txn_op`)"),
                TxnOp::Lock(_) => unreachable!("the model has no lock sessions (`txn_op`)"),
            };
            responses.push(ResponseOp { op: Some(r) });
        }
        if self.changed(rev) {
            self.revision = rev;
        }
        for r in &mut responses {
            if let Some(TxnOpResponse::Range(range)) = &mut r.op {
                range.revision = self.revision;
            }
        }
        Ok(TxnResponse {
            succeeded,
            responses,
        })
    }

    fn apply(&mut self, req: &Request) -> Response {
        self.index += 1;
        let result = match req.op.clone().unwrap() {
            Op::Put(p) => {
                if p.lease != 0 && !self.leases.contains_key(&p.lease) {
                    Err(KvError::LeaseNotFound { id: p.lease })
                } else {
                    let rev = self.revision + 1;
                    let r = self.put(&p, rev);
                    self.revision = rev;
                    Ok(Reply::Put(r))
                }
            }
            Op::DeleteRange(d) => {
                let rev = self.revision + 1;
                let r = self.delete(&d, rev);
                if r.deleted > 0 {
                    self.revision = rev;
                }
                Ok(Reply::DeleteRange(r))
            }
            Op::Txn(t) => self.txn(&t).map(Reply::Txn),
            Op::Compact(c) => {
                if c.revision < 1 {
                    Err(KvError::InvalidRequest(String::new()))
                } else if c.revision > self.revision {
                    Err(KvError::FutureRevision {
                        revision: c.revision,
                        current_revision: self.revision,
                    })
                } else if c.revision <= self.compacted {
                    Err(KvError::Compacted {
                        revision: c.revision,
                        compacted_revision: self.compacted,
                    })
                } else {
                    self.compacted = c.revision;
                    Ok(Reply::Compact(CompactResponse {}))
                }
            }
            Op::LeaseGrant(g) => {
                let mut id = g.id;
                if id == 0 {
                    id = self.index as i64;
                    while self.leases.contains_key(&id) {
                        id += 1;
                    }
                }
                match self.leases.entry(id) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        Err(KvError::LeaseExists { id })
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(g.ttl_ms);
                        Ok(Reply::LeaseGrant(LeaseGrantResponse {
                            id,
                            ttl_ms: g.ttl_ms,
                        }))
                    }
                }
            }
            Op::LeaseRevoke(r) => {
                if self.leases.remove(&r.id).is_none() {
                    Err(KvError::LeaseNotFound { id: r.id })
                } else {
                    let rev = self.revision + 1;
                    let keys: Vec<Bytes> = self
                        .history
                        .keys()
                        .filter(|k| self.get(k, i64::MAX).is_some_and(|m| m.lease == r.id))
                        .cloned()
                        .collect();
                    for k in &keys {
                        self.write(k, None, rev);
                    }
                    if !keys.is_empty() {
                        self.revision = rev;
                    }
                    Ok(Reply::LeaseRevoke(LeaseRevokeResponse {
                        deleted: keys.len() as u64,
                    }))
                }
            }
            _ => unreachable!("not generated"),
        };
        Response {
            revision: self.revision,
            result,
        }
    }
}

// ---------- generators ----------

fn key() -> impl Strategy<Value = Bytes> {
    (0..KEYS.len()).prop_map(|i| Bytes::from_static(KEYS[i].as_bytes()))
}

/// (key, range_end): one key, an interval, a prefix, or everything from a key on.
fn key_range() -> impl Strategy<Value = (Bytes, Bytes)> {
    prop_oneof![
        key().prop_map(|k| (k, Bytes::new())),
        (key(), key()).prop_map(|(a, b)| (a, b)),
        key().prop_map(|k| {
            let e = prefix_end(&k);
            (k, e)
        }),
        key().prop_map(|k| (k, Bytes::from_static(b"\0"))),
    ]
}

fn value() -> impl Strategy<Value = Bytes> {
    (0u8..26, 0usize..24).prop_map(|(c, n)| Bytes::from(vec![b'a' + c; n]))
}

fn lease_id() -> impl Strategy<Value = i64> {
    prop_oneof![5 => Just(0i64), 1 => 1i64..4]
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), value(), lease_id(), any::<bool>()).prop_map(|(k, v, lease, prev)| PutRequest {
        key: k,
        value: v,
        lease,
        prev_kv: prev,
        ..PutRequest::default()
    })
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_range(), any::<bool>()).prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

/// A revision relative to the current one, resolved when applied: 0 = current.
fn range() -> impl Strategy<Value = (RangeRequest, i64)> {
    (
        key_range(),
        0u64..4,
        prop_oneof![4 => Just(0i64), 6 => -8i64..2, 1 => Just(NEGATIVE)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |((key, range_end), limit, rev_back, keys_only, count_only)| {
                (
                    RangeRequest {
                        key,
                        range_end,
                        limit,
                        revision: 0,
                        keys_only,
                        count_only,
                        ..RangeRequest::default()
                    },
                    rev_back,
                )
            },
        )
}

/// Asks for a negative revision (invalid).
const NEGATIVE: i64 = -1000;

fn resolve(mut r: RangeRequest, back: i64, revision: i64) -> RangeRequest {
    r.revision = match back {
        0 => 0,
        NEGATIVE => -1,
        back => (revision + back).max(1),
    };
    r
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0i64..4).prop_map(CompareTarget::Version),
        (0i64..12).prop_map(CompareTarget::CreateRevision),
        (0i64..12).prop_map(CompareTarget::ModRevision),
        value().prop_map(CompareTarget::Value),
        (0i64..4).prop_map(CompareTarget::Lease),
    ];
    let op = prop_oneof![
        Just(CompareOp::Equal),
        Just(CompareOp::NotEqual),
        Just(CompareOp::Greater),
        Just(CompareOp::Less)
    ];
    (key_range(), op, target).prop_map(|((key, range_end), op, target)| {
        Compare::new(key, op, target).with_range_end(range_end)
    })
}

fn txn_op() -> impl Strategy<Value = (RequestOp, i64)> {
    prop_oneof![
        put().prop_map(|p| (RequestOp::from(p), 0)),
        delete().prop_map(|d| (RequestOp::from(d), 0)),
        range().prop_map(|(r, back)| (RequestOp::from(r), back)),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Range(RangeRequest, i64),
    Txn(Vec<Compare>, Vec<(RequestOp, i64)>, Vec<(RequestOp, i64)>),
    Compact(i64),
    Grant(i64, u64),
    Revoke(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put().prop_map(Step::Put),
        2 => delete().prop_map(Step::Delete),
        3 => range().prop_map(|(r, back)| Step::Range(r, back)),
        4 => (proptest::collection::vec(compare(), 0..3), proptest::collection::vec(txn_op(), 0..4), proptest::collection::vec(txn_op(), 0..4))
            .prop_map(|(c, s, f)| Step::Txn(c, s, f)),
        1 => (-6i64..2).prop_map(Step::Compact),
        2 => (prop_oneof![1 => Just(0i64), 4 => 1i64..4], 1u64..1000).prop_map(|(id, ttl)| Step::Grant(id, ttl)),
        1 => (1i64..4).prop_map(Step::Revoke),
    ]
}

fn resolve_ops(ops: &[(RequestOp, i64)], revision: i64) -> Vec<RequestOp> {
    ops.iter()
        .map(|(op, back)| match op.op.clone().unwrap() {
            TxnOp::Range(r) => RequestOp::from(resolve(r, *back, revision)),
            _ => op.clone(),
        })
        .collect()
}

// ---------- the property ----------

/// Every range the model can check, at every retained revision.
fn check_all_reads(store: &KvStore, model: &Model) {
    for rev in (model.compacted.max(1)..=model.revision).chain([0]) {
        let req = RangeRequest::range("", "\0").at_revision(rev);
        let mut used = 0;
        let want = Model { ..model.clone() };
        let want = {
            let mut m = want;
            m.revision = model.revision;
            m.range(&RangeRequest { ..req.clone() }, &mut used)
        };
        // The full range may exceed the small byte limit: compare with keys_only then.
        let got = store.range(&req);
        match (&got, &want) {
            (Err(KvError::RangeTooLarge { .. }), Err(KvError::RangeTooLarge { .. })) => {
                let req = req.clone().keys_only();
                let mut used = 0;
                let want = model.range(&req, &mut used);
                if !matches!(want, Err(KvError::RangeTooLarge { .. })) {
                    assert_eq!(store.range(&req), want, "keys-only read at revision {rev}");
                }
            }
            _ => assert_eq!(got, want, "read at revision {rev}"),
        }
    }
}

fn run(steps: &[Step]) {
    let mut store = KvStore::new(limits());
    let mut model = Model {
        revision: raftkv_kv::INITIAL_REVISION,
        ..Model::default()
    };
    let mut log: Vec<Vec<u8>> = Vec::new();
    for step in steps {
        let revision = model.revision;
        let request = match step {
            Step::Range(r, back) => {
                let req = resolve(r.clone(), *back, revision);
                let mut used = 0;
                let want = model.range(&req, &mut used);
                let got = store.range(&req);
                match (&got, &want) {
                    (Err(KvError::InvalidRequest(_)), Err(KvError::InvalidRequest(_))) => {}
                    _ => assert_eq!(got, want, "range {req:?}"),
                }
                continue;
            }
            Step::Put(p) => Request::new(Op::Put(p.clone())),
            Step::Delete(d) => Request::new(Op::DeleteRange(d.clone())),
            Step::Txn(c, s, f) => Request::txn(TxnRequest {
                compare: c.clone(),
                success: resolve_ops(s, revision),
                failure: resolve_ops(f, revision),
            }),
            Step::Compact(back) => Request::compact(revision + back),
            Step::Grant(id, ttl) => Request::lease_grant(*id, *ttl),
            Step::Revoke(id) => Request::lease_revoke(*id),
        };
        let payload = request.encode_to_vec();
        let want = model.apply(&request);
        let got = store.apply(model.index, &payload);
        assert!(
            same(&got.result, &want.result),
            "{request:?}\n got {got:?}\nwant {want:?}"
        );
        assert_eq!(got.revision, want.revision, "{request:?}");
        assert_eq!(store.revision(), model.revision);
        assert_eq!(store.compacted_revision(), model.compacted);
        assert_eq!(store.live_bytes(), model.live_bytes(), "{request:?}");
        assert_eq!(
            store.lease_ids(),
            model.leases.keys().copied().collect::<Vec<_>>()
        );
        log.push(payload);
    }
    check_all_reads(&store, &model);

    // Determinism: replaying the log gives the same state hash.
    let mut replay = KvStore::new(limits());
    for (i, payload) in log.iter().enumerate() {
        replay.apply(i as u64 + 1, payload);
    }
    assert_eq!(replay.state_hash(), store.state_hash());

    // Snapshot round trip: same hash, same reads.
    let mut buf = Vec::new();
    store.write_snapshot(&mut buf).unwrap();
    let restored = KvStore::restore(&mut buf.as_slice(), limits()).unwrap();
    assert_eq!(restored.state_hash(), store.state_hash());
    assert_eq!(restored.live_bytes(), model.live_bytes());
    check_all_reads(&restored, &model);
    for id in model.leases.keys() {
        let a = store.lease_time_to_live(*id, 0).unwrap();
        let b = restored.lease_time_to_live(*id, 0).unwrap();
        assert_eq!((a.ttl_ms, a.keys), (b.ttl_ms, b.keys));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(steps in proptest::collection::vec(step(), 1..60)) {
        run(&steps);
    }
}
