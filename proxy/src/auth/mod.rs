//! Who a request comes from: the operator's master key, a key issued through the admin
//! API (`tg_…`, cached in front of the database, evicted across replicas), or a JWT from a
//! configured issuer. Sent as `Authorization: Bearer <key>` or `x-api-key: <key>`.

pub mod client_keys;
pub mod invalidation;
pub mod jwt;
pub mod master_key;
mod secret_digests;
pub mod secret_key;

use std::sync::Arc;

use http::HeaderMap;

pub use master_key::MasterKey;

use crate::{
    auth::{
        client_keys::{ClientKey, ClientKeys},
        jwt::{JwtAuth, Subject, looks_like_jwt},
        master_key::presented_key,
    },
    error::GatewayError,
};

/// Who a request comes from.
pub enum Principal {
    /// The operator's master key.
    Master,
    Key(Arc<ClientKey>),
    /// A JWT from a configured issuer, naming a user or team.
    Jwt(Arc<Subject>),
}

impl Principal {
    /// Who is calling, for the access log: the key (its public id, or `master`), the user
    /// and the team ids. Never a secret.
    pub fn log_ids(&self) -> (Option<&str>, Option<i64>, Option<i64>) {
        match self {
            Principal::Master => (Some("master"), None, None),
            Principal::Key(k) => (
                Some(k.public_id()),
                k.record.key.user_id,
                k.record.key.team_id,
            ),
            Principal::Jwt(s) => match s.kind {
                tollgate_core::config::SubjectKind::User => (None, Some(s.id), None),
                tollgate_core::config::SubjectKind::Team => (None, None, Some(s.id)),
            },
        }
    }
}

/// Client authentication: the master key, or a key issued through the admin API.
pub struct Auth {
    pub master: MasterKey,
    pub keys: Arc<ClientKeys>,
    pub jwt: Arc<JwtAuth>,
}

impl Auth {
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, GatewayError> {
        let presented = presented_key(headers).ok_or(GatewayError::MissingKey)?;
        if self.master.matches(presented) {
            return Ok(Principal::Master);
        }
        if !self.jwt.is_empty() && looks_like_jwt(presented) {
            return self.jwt.authenticate(presented).await.map(Principal::Jwt);
        }
        self.keys.authenticate(presented).await.map(Principal::Key)
    }
}
