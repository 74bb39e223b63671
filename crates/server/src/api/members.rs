//! Membership: `GET /v1/members` lists, `POST /v1/members` adds a node as a learner (a new node
//! calls it with `--join`; it is promoted once caught up), `POST /v1/members/{name}` adds a
//! member an operator names before the node starts (etcd's `member add`), `POST
//! /v1/members/{name}/promote` makes a learner a voter, `DELETE /v1/members/{name}` removes one,
//! `POST /v1/internal/publish` records a member's addresses through the log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use raftkv_raft::NodeId;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Trusted;
use super::error::ApiError;
use super::forward::Forward;
use super::{Api, JoinRequest, JoinResponse};
use crate::members::{Member, node_id};

/// A member as `/v1/status` and `/v1/members` show it.
#[derive(Serialize)]
pub struct MemberView {
    /// Its node id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    role: &'static str,
    peer_url: String,
    client_url: String,
}

/// The members of a configuration, with their registry records, sorted by name.
pub fn member_views(
    api: &Api,
    voters: &[NodeId],
    outgoing: &[NodeId],
    learners: &[NodeId],
) -> Vec<MemberView> {
    let mut ids: Vec<NodeId> = voters
        .iter()
        .chain(outgoing)
        .chain(learners)
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut views: Vec<MemberView> = api.service.read(|state| {
        ids.into_iter()
            .map(|id| {
                let member = state.registry.get(id);
                MemberView {
                    id,
                    name: member.map(|m| m.name.clone()).unwrap_or_default(),
                    role: if voters.contains(&id) || outgoing.contains(&id) {
                        "voter"
                    } else {
                        "learner"
                    },
                    peer_url: member.map(|m| m.peer_url.clone()).unwrap_or_default(),
                    client_url: member.map(|m| m.client_url.clone()).unwrap_or_default(),
                }
            })
            .collect()
    });
    views.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    views
}

/// `GET /v1/members`.
pub async fn list(State(api): State<Api>) -> Response {
    let status = api.service.status();
    Json(json!({
        "members": member_views(&api, &status.voters, &status.voters_outgoing, &status.learners)
    }))
    .into_response()
}

/// `POST /v1/members`: a new node asks to join.
pub async fn join(
    State(api): State<Api>,
    trusted: Option<axum::Extension<Trusted>>,
    request: Forward,
) -> Response {
    let join: JoinRequest = match serde_json::from_slice(&request.body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("bad join request: {e}")).into_response(),
    };
    if join.name.is_empty() {
        return ApiError::bad_request("a joining node needs a name").into_response();
    }
    let member = Member {
        id: node_id(&join.name),
        name: join.name,
        peer_url: join.peer_url,
        client_url: join.client_url,
    };
    if let Some(reason) = member.invalid() {
        return ApiError::bad_request(reason).into_response();
    }
    let auth_enabled = api.service.read(|state| state.auth.enabled());
    if auth_enabled && !trusted.is_some_and(|t| t.0.0) && !pre_added(&api, &member.peer_url) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth",
            format!(
                "authentication is enabled: a node joins only at the peer URL of a member root \
                 added first (`raftkv member add {} --peer-url {}` as root), or as root",
                member.name, member.peer_url
            ),
        )
        .into_response();
    }
    let result = api.service.join(member).await;
    let cluster_id = cluster_id_of(&api);
    let members: Vec<Member> = api
        .service
        .read(|state| state.registry.members().cloned().collect());
    api.answer_or_forward(result, request, |(_, id)| {
        serde_json::to_value(JoinResponse {
            cluster_id,
            id,
            members,
        })
        .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await
}

/// Whether a member that has not started yet was added at `peer_url`.
fn pre_added(api: &Api, peer_url: &str) -> bool {
    api.service.read(|state| {
        state
            .registry
            .by_peer_url(peer_url)
            .is_some_and(|m| m.is_unstarted())
    })
}

/// The node id `name` stands for: a member's name, a node id, or the id a node of that name
/// will have.
fn member_id(api: &Api, name: &str) -> NodeId {
    let by_name = api
        .service
        .read(|state| state.registry.by_name(name).map(|m| m.id));
    by_name
        .or_else(|| name.parse::<NodeId>().ok())
        .unwrap_or_else(|| node_id(name))
}

/// The body of `POST /v1/members/{name}`.
#[derive(Deserialize)]
struct AddRequest {
    /// Where the new member will listen for its peers.
    peer_url: String,
    /// Keep it a learner until promoted (otherwise it is promoted once caught up).
    #[serde(default)]
    learner: bool,
}

/// `POST /v1/members/{name}` with `{"peer_url": ..., "learner": bool}`: adds a member that will
/// start later (with `--join`, at that peer URL) and take this name.
pub async fn add(State(api): State<Api>, Path(name): Path<String>, request: Forward) -> Response {
    let add: AddRequest = match serde_json::from_slice(&request.body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::bad_request(format!(
                "bad member: {e}; expected {{\"peer_url\": \"http://host:port\", \"learner\": false}}"
            ))
            .into_response();
        }
    };
    let id = node_id(&name);
    let conflict = api.service.read(|state| {
        let registry = &state.registry;
        if registry.by_name(&name).is_some() || registry.get(id).is_some() {
            Some(format!("a member named `{name}` exists already"))
        } else {
            registry.by_peer_url(&add.peer_url).map(|m| {
                format!(
                    "member {:x} has the peer URL {} already",
                    m.id, add.peer_url
                )
            })
        }
    });
    if let Some(reason) = conflict {
        return ApiError::new(StatusCode::CONFLICT, "conflict", reason).into_response();
    }
    let result = api.service.add_member(id, add.peer_url, add.learner).await;
    api.answer_or_forward(result, request, |index| {
        Ok(json!({ "added": name, "id": id, "index": index, "learner": add.learner }))
    })
    .await
}

/// `POST /v1/members/{name}/promote`: makes a learner that has caught up a voter.
pub async fn promote(
    State(api): State<Api>,
    Path(name): Path<String>,
    request: Forward,
) -> Response {
    let id = member_id(&api, &name);
    let result = api.service.promote_member(id).await;
    api.answer_or_forward(result, request, |index| {
        Ok(json!({ "promoted": name, "id": id, "index": index }))
    })
    .await
}

/// `DELETE /v1/members/{name}`, or `DELETE /v1/members/{id}` with the member's node id (which
/// removes a member whatever its name).
pub async fn remove(
    State(api): State<Api>,
    Path(name): Path<String>,
    request: Forward,
) -> Response {
    let id = member_id(&api, &name);
    let result = api.service.remove_member(id).await;
    api.answer_or_forward(result, request, |index| {
        Ok(json!({ "removed": name, "id": id, "index": index }))
    })
    .await
}

/// `POST /v1/internal/publish`: a member's addresses, recorded through the leader.
pub async fn publish(State(api): State<Api>, request: Forward) -> Response {
    let member: Member = match serde_json::from_slice(&request.body) {
        Ok(m) => m,
        Err(e) => return ApiError::bad_request(format!("bad member: {e}")).into_response(),
    };
    let status = api.service.status();
    let is_member = [&status.voters, &status.voters_outgoing, &status.learners]
        .iter()
        .any(|ids| ids.contains(&member.id));
    if let Some(reason) = member.invalid() {
        return ApiError::bad_request(reason).into_response();
    }
    // A member publishes under its own id: the one its name gives, or the one it took over
    // from an operator's addition (then the registry's record had no name).
    let recorded = api.service.read(|state| {
        state
            .registry
            .get(member.id)
            .is_some_and(|m| m.name == member.name || m.is_unstarted())
    });
    if !is_member || (member.id != node_id(&member.name) && !recorded) {
        return ApiError::bad_request("only a current member can publish its addresses")
            .into_response();
    }
    let result = api.service.publish(member).await;
    api.answer_or_forward(result, request, |_| Ok(json!({ "published": true })))
        .await
}

/// The cluster id this node belongs to.
fn cluster_id_of(api: &Api) -> u64 {
    u64::from_str_radix(&api.service.status().cluster_id, 16).unwrap_or(0)
}
