//! etcd's Auth service: enabling and disabling authentication, users, roles and permissions
//! (changed through the log, by root once authentication is enabled), and `Authenticate`,
//! which checks a password on this member and answers a token any member accepts. Also how
//! every other etcd service learns its caller: the `token` metadata etcd's clients send.

use std::future::Future;
use std::pin::Pin;

use raftkv_etcdpb::authpb;
use raftkv_etcdpb::etcdserverpb::auth_client::AuthClient;
use raftkv_etcdpb::etcdserverpb::auth_server::Auth;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use raftkv_replica::Applied;
use raftkv_replica::auth::{
    AuthChange, AuthError, AuthOp, Grant, Permission, RolePermission, User,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::Etcd;
use super::forward::Forwarder;
use super::status;
use crate::auth::{self, Caller, Need};
use crate::error::RequestError;

/// The metadata key etcd's clients carry their token in.
pub const TOKEN_METADATA: &str = "token";

/// A forwarded call's future.
type Forwarded<Resp> = Pin<Box<dyn Future<Output = Result<Response<Resp>, Status>> + Send>>;

/// An auth error as etcd reports it.
pub fn auth_status(error: AuthError) -> Status {
    let code = match error {
        AuthError::AuthFailed | AuthError::UserEmpty | AuthError::RoleEmpty => {
            Code::InvalidArgument
        }
        AuthError::InvalidAuthMgmt => Code::InvalidArgument,
        AuthError::PermissionDenied => Code::PermissionDenied,
        AuthError::InvalidToken => Code::Unauthenticated,
        _ => Code::FailedPrecondition,
    };
    Status::new(code, error.to_string())
}

/// The text of metadata `key` of `request`, if any.
fn metadata<'a, T>(request: &'a Request<T>, key: &str) -> Option<&'a str> {
    request.metadata().get(key).and_then(|v| v.to_str().ok())
}

impl Etcd {
    /// Who sent `request`: another member (a member token), the user its `token` speaks for,
    /// or nobody (an invalid token is refused).
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let member_token = metadata(request, auth::MEMBER_TOKEN_HEADER);
        let token = metadata(request, TOKEN_METADATA);
        self.service
            .read(|state| auth::identify(state, member_token, token))
            .map_err(auth_status)
    }

    /// Refuses `request` unless its caller may do what `need` says.
    pub fn authorize<T>(&self, request: &Request<T>, need: Need<'_>) -> Result<Caller, Status> {
        let caller = self.caller(request)?;
        self.service
            .read(|state| auth::authorize(&state.auth, &caller, need))
            .map_err(auth_status)?;
        Ok(caller)
    }

    /// Applies an auth change through the log (root only once enabled), answering with
    /// `respond`, or forwards the call to the leader with `forward`.
    async fn change<Req, Resp>(
        &self,
        request: Request<Req>,
        op: impl FnOnce(&Req) -> Result<AuthOp, Status>,
        forward: impl FnOnce(AuthClient<Channel>, Request<Req>) -> Forwarded<Resp>,
        respond: impl FnOnce(Option<pb::ResponseHeader>) -> Resp,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Send + 'static,
    {
        self.authorize(&request, Need::Root)?;
        let forwarded = Forwarder::was_forwarded(&request);
        let message = request.into_inner();
        let change = op(&message)?;
        match self.service.auth(AuthChange { op: Some(change) }).await {
            Ok(Applied::Auth(Ok(()))) => Ok(Response::new(respond(self.header_now()))),
            Ok(Applied::Auth(Err(e))) => Err(auth_status(e)),
            Ok(_) => Err(Status::internal("an auth change applied as something else")),
            Err(RequestError::NotLeader { leader }) => {
                let client = self.forward.auth(leader, forwarded)?;
                forward(client, self.forward.marked(message)).await
            }
            Err(e) => Err(status::request(e)),
        }
    }
}

/// `password` hashed, off the async threads.
async fn hashed(password: String) -> Result<String, Status> {
    if password.len() > auth::PASSWORD_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "the password is over {} bytes",
            auth::PASSWORD_BYTES_MAX
        )));
    }
    auth::hash_password_bounded(password)
        .await
        .map_err(auth_status)
}

fn permission(perm: Option<authpb::Permission>) -> Permission {
    let perm = perm.unwrap_or_default();
    Permission {
        perm_type: perm.perm_type,
        key: perm.key,
        range_end: perm.range_end,
    }
}

#[tonic::async_trait]
impl Auth for Etcd {
    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let secret = auth::new_secret().map_err(auth_status)?;
        self.change(
            request,
            |_| Ok(AuthOp::Enable(secret)),
            |mut c, r| Box::pin(async move { c.auth_enable(r).await }),
            |header| pb::AuthEnableResponse { header },
        )
        .await
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        self.change(
            request,
            |_| Ok(AuthOp::Disable(true)),
            |mut c, r| Box::pin(async move { c.auth_disable(r).await }),
            |header| pb::AuthDisableResponse { header },
        )
        .await
    }

    async fn auth_status(
        &self,
        _request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let (enabled, revision) = self
            .service
            .read(|state| (state.auth.enabled(), state.auth.revision()));
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.header_now(),
            enabled,
            auth_revision: revision,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = request.into_inner();
        let (enabled, stored) = self.service.read(|state| {
            let stored = state.auth.user(&r.name).map(|u| u.password_hash.clone());
            (state.auth.enabled(), stored)
        });
        if !enabled {
            return Err(auth_status(AuthError::NotEnabled));
        }
        let stored = stored.ok_or_else(|| auth_status(AuthError::AuthFailed))?;
        let password = r.password;
        auth::check_password_bounded(stored, password)
            .await
            .map_err(auth_status)?;
        let ttl = self.service.config().auth_token_ttl;
        let token = self
            .service
            .read(|state| auth::mint(&state.auth, &r.name, ttl));
        Ok(Response::new(pb::AuthenticateResponse {
            header: self.header_now(),
            token,
        }))
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        // Checked before the (deliberately slow) hashing, so nobody else can make it run.
        self.authorize(&request, Need::Root)?;
        let r = request.get_ref();
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let password_hash = if no_password {
            String::new()
        } else if !r.hashed_password.is_empty() {
            return Err(Status::invalid_argument(
                "raftkv takes the password itself, not a hash made elsewhere",
            ));
        } else {
            hashed(r.password.clone()).await?
        };
        self.change(
            request,
            move |r| {
                Ok(AuthOp::UserAdd(User {
                    name: r.name.clone(),
                    password_hash,
                    roles: Vec::new(),
                }))
            },
            |mut c, r| Box::pin(async move { c.user_add(r).await }),
            |header| pb::AuthUserAddResponse { header },
        )
        .await
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let name = request.into_inner().name;
        let roles = self
            .service
            .read(|state| state.auth.user(&name).map(|u| u.roles.clone()))
            .ok_or_else(|| auth_status(AuthError::UserNotFound))?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: self.header_now(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let users = self
            .service
            .read(|state| state.auth.users().map(|u| u.name.clone()).collect());
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.header_now(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        self.change(
            request,
            |r| Ok(AuthOp::UserDelete(r.name.clone())),
            |mut c, r| Box::pin(async move { c.user_delete(r).await }),
            |header| pb::AuthUserDeleteResponse { header },
        )
        .await
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let password_hash = hashed(request.get_ref().password.clone()).await?;
        self.change(
            request,
            move |r| {
                Ok(AuthOp::UserChangePassword(User {
                    name: r.name.clone(),
                    password_hash,
                    roles: Vec::new(),
                }))
            },
            |mut c, r| Box::pin(async move { c.user_change_password(r).await }),
            |header| pb::AuthUserChangePasswordResponse { header },
        )
        .await
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        self.change(
            request,
            |r| {
                Ok(AuthOp::UserGrantRole(Grant {
                    user: r.user.clone(),
                    role: r.role.clone(),
                }))
            },
            |mut c, r| Box::pin(async move { c.user_grant_role(r).await }),
            |header| pb::AuthUserGrantRoleResponse { header },
        )
        .await
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        self.change(
            request,
            |r| {
                Ok(AuthOp::UserRevokeRole(Grant {
                    user: r.name.clone(),
                    role: r.role.clone(),
                }))
            },
            |mut c, r| Box::pin(async move { c.user_revoke_role(r).await }),
            |header| pb::AuthUserRevokeRoleResponse { header },
        )
        .await
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        self.change(
            request,
            |r| Ok(AuthOp::RoleAdd(r.name.clone())),
            |mut c, r| Box::pin(async move { c.role_add(r).await }),
            |header| pb::AuthRoleAddResponse { header },
        )
        .await
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let name = request.into_inner().role;
        let perm = self
            .service
            .read(|state| state.auth.role(&name).map(|r| r.permissions.clone()))
            .ok_or_else(|| auth_status(AuthError::RoleNotFound))?;
        Ok(Response::new(pb::AuthRoleGetResponse {
            header: self.header_now(),
            perm: perm
                .into_iter()
                .map(|p| authpb::Permission {
                    perm_type: p.perm_type,
                    key: p.key,
                    range_end: p.range_end,
                })
                .collect(),
        }))
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let roles = self
            .service
            .read(|state| state.auth.roles().map(|r| r.name.clone()).collect());
        Ok(Response::new(pb::AuthRoleListResponse {
            header: self.header_now(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        self.change(
            request,
            |r| Ok(AuthOp::RoleDelete(r.role.clone())),
            |mut c, r| Box::pin(async move { c.role_delete(r).await }),
            |header| pb::AuthRoleDeleteResponse { header },
        )
        .await
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        self.change(
            request,
            |r| {
                Ok(AuthOp::RoleGrantPermission(RolePermission {
                    role: r.name.clone(),
                    permission: Some(permission(r.perm.clone())),
                }))
            },
            |mut c, r| Box::pin(async move { c.role_grant_permission(r).await }),
            |header| pb::AuthRoleGrantPermissionResponse { header },
        )
        .await
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        self.change(
            request,
            |r| {
                Ok(AuthOp::RoleRevokePermission(RolePermission {
                    role: r.role.clone(),
                    permission: Some(Permission {
                        perm_type: 0,
                        key: r.key.clone(),
                        range_end: r.range_end.clone(),
                    }),
                }))
            },
            |mut c, r| Box::pin(async move { c.role_revoke_permission(r).await }),
            |header| pb::AuthRoleRevokePermissionResponse { header },
        )
        .await
    }
}
