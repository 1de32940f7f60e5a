//! Sessions: log in with email and password for a short-lived token; when it expires, log
//! in again (or refresh it while it is still valid).

use std::{net::SocketAddr, time::SystemTime};

use axum::{
    Extension, Json,
    extract::{ConnectInfo, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tollgate_core::{secrets::verify_password, store::users};
use utoipa::ToSchema;

use super::views::{RoleName, UserView};
use crate::{
    AdminState,
    auth::{Caller, MAX_SESSION, Principal, SessionToken, issue_token},
    error::{ApiError, ApiResult, ErrorBody},
    extract::JsonBody,
    hashing::decoy_hash,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_at: DateTime<Utc>,
    pub user: UserView,
}

fn token_response(session: SessionToken, user: UserView) -> TokenResponse {
    TokenResponse {
        token: session.token,
        token_type: "Bearer",
        expires_at: session.expires_at.into(),
        user,
    }
}

/// Log in: exchange email and password for a session token.
#[utoipa::path(post, operation_id = "session_login", path = "/api/auth/login", tag = "auth", security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong email or password, or a disabled user", body = ErrorBody),
        (status = 422, description = "A field is missing or malformed", body = ErrorBody),
        (status = 429, description = "Too many failed logins from this address or for this account; see `retry-after`", body = ErrorBody),
        (status = 503, description = "Too many logins at once; try again in a moment", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AdminState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let addr = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let attempt = state.throttle().attempt(addr, &req.email).await?;
    let user = users::find_by_email(state.db(), &req.email).await?;
    // An unknown email is checked against a decoy hash: the answer takes as long.
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password = req.password;
    let matches = state
        .hasher()
        .run(move || {
            let stored = stored.as_deref().unwrap_or_else(|| decoy_hash());
            verify_password(&password, stored).unwrap_or(false)
        })
        .await?;
    let wrong = || ApiError::Unauthenticated("wrong email or password".into());
    let user = user.filter(|_| matches).ok_or_else(wrong)?;
    state.throttle().succeeded(attempt).await;
    if user.disabled {
        return Err(ApiError::Unauthenticated("this user is disabled".into()));
    }
    let session = issue_token(
        state.secret().jwt_key(),
        &user,
        state.settings().token_ttl,
        None,
    )?;
    tracing::info!(user = user.id, "admin login");
    Ok(Json(token_response(session, user.into())))
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// `user` for a session token, `master_key` for the operator's key.
    pub principal: &'static str,
    pub role: RoleName,
    pub user: Option<UserView>,
}

/// Who the credential belongs to.
#[utoipa::path(get, operation_id = "session_me", path = "/api/auth/me", tag = "auth",
    responses(
        (status = 200, description = "OK", body = MeResponse),
        (status = 401, description = "No valid credential", body = ErrorBody),
    ))]
pub async fn me(caller: Caller) -> Json<MeResponse> {
    let role = caller.role().into();
    Json(match caller.principal {
        Principal::MasterKey => MeResponse {
            principal: "master_key",
            role,
            user: None,
        },
        Principal::User(u) => MeResponse {
            principal: "user",
            role,
            user: Some(u.into()),
        },
    })
}

/// Exchange a valid session token for a new one with a fresh lifetime (up to 12 hours after
/// the login).
#[utoipa::path(post, operation_id = "session_refresh", path = "/api/auth/refresh", tag = "auth",
    responses(
        (status = 200, description = "OK", body = TokenResponse),
        (status = 400, description = "The master key has no session", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
    ))]
pub async fn refresh(
    State(state): State<AdminState>,
    caller: Caller,
) -> ApiResult<Json<TokenResponse>> {
    let Principal::User(user) = caller.principal else {
        return Err(ApiError::BadRequest(
            "the master key has no session to refresh".into(),
        ));
    };
    // A stolen token must not live forever: refreshing ends some hours after the login.
    let login = caller.login.unwrap_or_else(SystemTime::now);
    if login.elapsed().unwrap_or_default() > MAX_SESSION {
        return Err(ApiError::Unauthenticated(
            "this session is too old to refresh; log in again".into(),
        ));
    }
    let session = issue_token(
        state.secret().jwt_key(),
        &user,
        state.settings().token_ttl,
        Some(login),
    )?;
    Ok(Json(token_response(session, user.into())))
}
