//! etcd's messages to the store's and back. The store's requests already follow etcd's model
//! (ranges, compares, transactions, leases), so this is field for field, with etcd's 64-bit
//! signed counts and its enums as numbers.

use raftkv_etcdpb::etcdserverpb::{self as pb, compare, request_op, response_op};
use raftkv_etcdpb::mvccpb;
use raftkv_kv as kv;
use tonic::Status;

/// A store key-value in etcd's form.
pub fn key_value(kv: kv::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// etcd's range as the store's (the enums have etcd's numbers).
pub fn range(request: &pb::RangeRequest) -> Result<kv::RangeRequest, Status> {
    let limit = u64::try_from(request.limit)
        .map_err(|_| Status::invalid_argument("etcdserver: limit must not be negative"))?;
    Ok(kv::RangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        limit,
        revision: request.revision,
        keys_only: request.keys_only,
        count_only: request.count_only,
        sort_order: request.sort_order,
        sort_target: request.sort_target,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    })
}

/// The store's range answer in etcd's form (without a header).
pub fn range_response(response: kv::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: None,
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: i64::try_from(response.count).unwrap_or(i64::MAX),
    }
}

/// etcd's put as the store's.
pub fn put(request: pb::PutRequest) -> Result<kv::PutRequest, Status> {
    Ok(kv::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
        flags: 0,
    })
}

/// The store's put answer in etcd's form.
pub fn put_response(response: kv::PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: None,
        prev_kv: response.prev_kv.map(key_value),
    }
}

/// etcd's delete as the store's.
pub fn delete(request: pb::DeleteRangeRequest) -> kv::DeleteRangeRequest {
    kv::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// The store's delete answer in etcd's form.
pub fn delete_response(response: kv::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: None,
        deleted: i64::try_from(response.deleted).unwrap_or(i64::MAX),
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

/// etcd's compare as the store's: `target` says which field, `target_union` holds its value
/// (unset: the field's zero value, as etcd reads it).
fn compare(c: pb::Compare) -> Result<kv::Compare, Status> {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let op = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => kv::CompareOp::Equal,
        Ok(CompareResult::Greater) => kv::CompareOp::Greater,
        Ok(CompareResult::Less) => kv::CompareOp::Less,
        Ok(CompareResult::NotEqual) => kv::CompareOp::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: unknown compare result",
            ));
        }
    };
    let number = |union: &Option<TargetUnion>| match union {
        Some(
            TargetUnion::Version(n)
            | TargetUnion::CreateRevision(n)
            | TargetUnion::ModRevision(n)
            | TargetUnion::Lease(n),
        ) => *n,
        _ => 0,
    };
    let target = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Version) => kv::CompareTarget::Version(number(&c.target_union)),
        Ok(CompareTarget::Create) => kv::CompareTarget::CreateRevision(number(&c.target_union)),
        Ok(CompareTarget::Mod) => kv::CompareTarget::ModRevision(number(&c.target_union)),
        Ok(CompareTarget::Lease) => kv::CompareTarget::Lease(number(&c.target_union)),
        Ok(CompareTarget::Value) => kv::CompareTarget::Value(match c.target_union {
            Some(TargetUnion::Value(v)) => v,
            _ => bytes::Bytes::new(),
        }),
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: unknown compare target",
            ));
        }
    };
    Ok(kv::Compare::new(c.key, op, target).with_range_end(c.range_end))
}

fn request_op(op: pb::RequestOp) -> Result<kv::RequestOp, Status> {
    let op = match op.request {
        Some(request_op::Request::RequestRange(r)) => kv::TxnOp::Range(range(&r)?),
        Some(request_op::Request::RequestPut(p)) => kv::TxnOp::Put(put(p)?),
        Some(request_op::Request::RequestDeleteRange(d)) => kv::TxnOp::DeleteRange(delete(d)),
        Some(request_op::Request::RequestTxn(t)) => kv::TxnOp::Txn(txn(t)?),
        None => {
            return Err(Status::invalid_argument(
                "etcdserver: empty request operation",
            ));
        }
    };
    Ok(kv::RequestOp { op: Some(op) })
}

/// etcd's transaction as the store's.
pub fn txn(request: pb::TxnRequest) -> Result<kv::TxnRequest, Status> {
    Ok(kv::TxnRequest {
        compare: request
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: request
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: request
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

/// The store's transaction answer in etcd's form; each nested response carries `header` too, as
/// etcd's do.
pub fn txn_response(
    response: kv::TxnResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::TxnResponse {
    let responses = response
        .responses
        .into_iter()
        .filter_map(|r| r.op)
        .filter_map(|op| {
            let response = match op {
                kv::TxnOpResponse::Range(r) => {
                    response_op::Response::ResponseRange(pb::RangeResponse {
                        header,
                        ..range_response(r)
                    })
                }
                kv::TxnOpResponse::Put(p) => response_op::Response::ResponsePut(pb::PutResponse {
                    header,
                    ..put_response(p)
                }),
                kv::TxnOpResponse::DeleteRange(d) => {
                    response_op::Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                        header,
                        ..delete_response(d)
                    })
                }
                kv::TxnOpResponse::Txn(t) => {
                    response_op::Response::ResponseTxn(txn_response(t, header))
                }
                // etcd has no locks: no etcd transaction asks for one.
                kv::TxnOpResponse::Lock(_) => return None,
            };
            Some(pb::ResponseOp {
                response: Some(response),
            })
        })
        .collect();
    pb::TxnResponse {
        header,
        succeeded: response.succeeded,
        responses,
    }
}
