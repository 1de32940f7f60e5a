//! Who is calling: an admin session token (a JWT signed with HS256 under a key derived from
//! `TOLLGATE_SECRET_KEY`) or the operator's master key. The user behind a token is read
//! from the store on every request, so disabling a user or changing a role takes effect at
//! once, not when the token expires; a token also carries a stamp of the user's password,
//! so changing the password ends every session logged in with the old one.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, header, request::Parts},
};
use josekit::{
    jws::{HS256, JwsHeader},
    jwt::{self, JwtPayload, JwtPayloadValidator},
};
use tollgate_core::{
    secrets::{constant_time_eq, password_stamp},
    store::{
        Actor,
        entity::{
            api_key,
            user::{self, Role},
        },
        users,
    },
};

use crate::{AdminState, error::ApiError};

const ISSUER: &str = "tollgate";
const AUDIENCE: &str = "tollgate-admin";
/// Clock skew tolerated between replicas when checking `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(5);

/// An issued session token.
pub struct SessionToken {
    pub token: String,
    pub expires_at: SystemTime,
}

/// How long refreshing can extend a session past its login.
pub const MAX_SESSION: Duration = Duration::from_secs(12 * 3600);

/// Signs a session token for `user`, valid for `ttl` from now, for a login at `login`
/// (now, or the original login when refreshing).
pub fn issue_token(
    key: &[u8; 32],
    user: &user::Model,
    ttl: Duration,
    login: Option<SystemTime>,
) -> Result<SessionToken, ApiError> {
    // Whole seconds: `iat` has no finer resolution, and a token must not look issued later
    // than the moment it is checked.
    let now = UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
    sign_session(key, user, now, now + ttl, login.unwrap_or(now))
}

/// Signs a session token with explicit times (a login at `issued_at`).
pub fn sign_token(
    key: &[u8; 32],
    user: &user::Model,
    issued_at: SystemTime,
    expires_at: SystemTime,
) -> Result<SessionToken, ApiError> {
    sign_session(key, user, issued_at, expires_at, issued_at)
}

fn sign_session(
    key: &[u8; 32],
    user: &user::Model,
    issued_at: SystemTime,
    expires_at: SystemTime,
    login: SystemTime,
) -> Result<SessionToken, ApiError> {
    let login_secs = login.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut payload = JwtPayload::new();
    payload
        .set_claim("auth_time", Some(login_secs.into()))
        .map_err(|e| ApiError::Internal(format!("building the token: {e}")))?;
    payload.set_issuer(ISSUER);
    payload.set_audience(vec![AUDIENCE]);
    payload.set_subject(user.id.to_string());
    payload.set_issued_at(&issued_at);
    payload.set_expires_at(&expires_at);
    payload
        .set_claim("role", Some(user.role.as_str().into()))
        .map_err(|e| ApiError::Internal(format!("building the token: {e}")))?;
    payload
        .set_claim("pwd", Some(password_stamp(key, &user.password_hash).into()))
        .map_err(|e| ApiError::Internal(format!("building the token: {e}")))?;
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    let signer = HS256
        .signer_from_bytes(key)
        .map_err(|e| ApiError::Internal(format!("token signer: {e}")))?;
    let token = jwt::encode_with_signer(&payload, &header, &signer)
        .map_err(|e| ApiError::Internal(format!("signing the token: {e}")))?;
    Ok(SessionToken { token, expires_at })
}

/// What a verified session token says.
#[derive(Debug)]
pub struct Session {
    pub user_id: i64,
    /// When the session logged in.
    pub login: SystemTime,
    /// The stamp of the password it logged in with.
    pub password_stamp: String,
}

/// Checks a session token's signature, algorithm, issuer, audience and lifetime.
pub fn verify_token(key: &[u8; 32], token: &str) -> Result<Session, ApiError> {
    let invalid = || ApiError::Unauthenticated("invalid session token; log in again".into());
    let verifier = HS256
        .verifier_from_bytes(key)
        .map_err(|e| ApiError::Internal(format!("token verifier: {e}")))?;
    // The verifier accepts only HS256: `alg: none` and other algorithms fail here.
    let (payload, _) = jwt::decode_with_verifier(token, &verifier).map_err(|_| invalid())?;
    let expires_at = payload.expires_at().ok_or_else(invalid)?;
    if expires_at + LEEWAY <= SystemTime::now() {
        return Err(ApiError::Unauthenticated(
            "session token expired; log in again".into(),
        ));
    }
    let mut validator = JwtPayloadValidator::new();
    validator.set_base_time(SystemTime::now() - LEEWAY);
    validator.set_max_issued_time(SystemTime::now() + LEEWAY);
    validator.set_issuer(ISSUER);
    validator.set_audience(AUDIENCE);
    validator.validate(&payload).map_err(|_| invalid())?;
    let user_id = payload
        .subject()
        .and_then(|s| s.parse().ok())
        .ok_or_else(invalid)?;
    let login = payload
        .claim("auth_time")
        .and_then(|v| v.as_u64())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
        .ok_or_else(invalid)?;
    let password_stamp = payload
        .claim("pwd")
        .and_then(|v| v.as_str())
        .ok_or_else(invalid)?
        .to_string();
    Ok(Session {
        user_id,
        login,
        password_stamp,
    })
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The operator's master key: acts as an admin.
    MasterKey,
    User(user::Model),
}

/// The authenticated caller of a request, with what the role allows.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub ip: Option<String>,
    /// When the caller's session logged in (`None` for the master key).
    pub login: Option<SystemTime>,
}

impl Caller {
    pub fn role(&self) -> Role {
        match &self.principal {
            Principal::MasterKey => Role::Admin,
            Principal::User(u) => u.role,
        }
    }

    pub fn user_id(&self) -> Option<i64> {
        match &self.principal {
            Principal::MasterKey => None,
            Principal::User(u) => Some(u.id),
        }
    }

    /// How the audit log names this caller.
    pub fn actor(&self) -> Actor {
        let name = match &self.principal {
            Principal::MasterKey => "master-key".to_string(),
            Principal::User(u) => format!("user:{}:{}", u.id, u.email),
        };
        Actor {
            name,
            ip: self.ip.clone(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Role::Admin
    }

    /// Admins only.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }

    /// Admins and viewers: reading what is not one's own.
    pub fn require_reader(&self) -> Result<(), ApiError> {
        match self.role() {
            Role::Admin | Role::Viewer => Ok(()),
            Role::Member => Err(ApiError::forbidden(
                "members may read only their own keys and usage",
            )),
        }
    }

    /// Admins, and members for keys they own alone (not team keys). Viewers change nothing.
    pub fn require_writer_of(&self, key: &api_key::Model) -> Result<(), ApiError> {
        match self.role() {
            Role::Admin => Ok(()),
            Role::Member if key.team_id.is_some() => {
                Err(ApiError::forbidden("team keys are managed by admins"))
            }
            Role::Member if key.user_id.is_some() && key.user_id == self.user_id() => Ok(()),
            Role::Member => Err(ApiError::forbidden(
                "members may change only their own keys",
            )),
            Role::Viewer => Err(ApiError::forbidden("viewers cannot change anything")),
        }
    }
}

/// The credential of a request: `Authorization: Bearer …` or `x-api-key`.
fn presented(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("malformed Authorization header".into()))?;
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return Err(ApiError::Unauthenticated(
                "expected `Authorization: Bearer <token>`".into(),
            ));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthenticated(
                "expected `Authorization: Bearer <token>`".into(),
            ));
        }
        return Ok(Some(token.trim()));
    }
    Ok(headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim))
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let Some(token) = presented(&parts.headers)? else {
            return Err(ApiError::Unauthenticated(
                "no credential: send `Authorization: Bearer <token>` from POST /api/auth/login"
                    .into(),
            ));
        };
        if let Some(master) = &state.inner.master_key
            && constant_time_eq(token.as_bytes(), master.as_bytes())
        {
            return Ok(Caller {
                principal: Principal::MasterKey,
                ip,
                login: None,
            });
        }
        let key = state.inner.secret.jwt_key();
        let session = verify_token(key, token)?;
        let user = match users::get_user(&state.inner.db, session.user_id).await {
            Ok(user) => user,
            Err(tollgate_core::store::StoreError::NotFound(_)) => {
                return Err(ApiError::Unauthenticated(
                    "the token's user no longer exists".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if user.disabled {
            return Err(ApiError::Unauthenticated("this user is disabled".into()));
        }
        let stamp = password_stamp(key, &user.password_hash);
        if !constant_time_eq(stamp.as_bytes(), session.password_stamp.as_bytes()) {
            return Err(ApiError::Unauthenticated(
                "the password was changed after this session logged in; log in again".into(),
            ));
        }
        Ok(Caller {
            principal: Principal::User(user),
            ip,
            login: Some(session.login),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn user(id: i64, role: Role, password_hash: &str) -> user::Model {
        user::Model {
            id,
            email: format!("u{id}@example.com"),
            password_hash: password_hash.into(),
            role,
            disabled: false,
            rpm_limit: None,
            tpm_limit: None,
            concurrency_limit: None,
            budget_micro_usd: None,
            budget_period: None,
            allowed_models: None,
            key_limits: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn tokens_round_trip() {
        let member = user(42, Role::Member, "hash-1");
        let t = issue_token(&KEY, &member, Duration::from_secs(60), None).unwrap();
        let session = verify_token(&KEY, &t.token).unwrap();
        assert_eq!(session.user_id, 42);
        assert_eq!(session.password_stamp, password_stamp(&KEY, "hash-1"));
        // Another password (hash), another stamp; the hash itself is not in the token.
        assert_ne!(session.password_stamp, password_stamp(&KEY, "hash-2"));
        let verifier = HS256.verifier_from_bytes(KEY).unwrap();
        let (payload, _) = jwt::decode_with_verifier(&t.token, &verifier).unwrap();
        assert!(!payload.to_string().contains("hash-1"), "{payload}");
    }

    #[test]
    fn forged_expired_and_unsigned_tokens_fail() {
        let admin = user(42, Role::Admin, "hash");
        let t = issue_token(&KEY, &admin, Duration::from_secs(60), None).unwrap();
        assert!(verify_token(&[8; 32], &t.token).is_err());

        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let expired =
            sign_token(&KEY, &admin, hour_ago, hour_ago + Duration::from_secs(60)).unwrap();
        let err = verify_token(&KEY, &expired.token).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");

        let mut payload = JwtPayload::new();
        payload.set_subject("42");
        payload.set_issuer(ISSUER);
        payload.set_audience(vec![AUDIENCE]);
        payload.set_expires_at(&(SystemTime::now() + Duration::from_secs(60)));
        let unsigned = jwt::encode_unsecured(&payload, &JwsHeader::new()).unwrap();
        assert!(verify_token(&KEY, &unsigned).is_err());
    }
}
