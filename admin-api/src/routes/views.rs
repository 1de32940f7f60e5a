//! What the API returns for stored records: never a secret, a hash or a ciphertext.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tollgate_core::{
    limits::{LimitChanges, QuotaLimits},
    store::{
        entity::{
            api_key, provider_credential, team,
            user::{self, Role},
        },
        key_policy::{KeyPolicy, PolicyChanges},
    },
};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Member,
    Viewer,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Admin => Role::Admin,
            RoleName::Member => Role::Member,
            RoleName::Viewer => Role::Viewer,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::Admin => RoleName::Admin,
            Role::Member => RoleName::Member,
            Role::Viewer => RoleName::Viewer,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub role: RoleName,
    pub disabled: bool,
    pub limits: QuotaLimits,
    pub key_policy: KeyPolicyView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<user::Model> for UserView {
    fn from(u: user::Model) -> Self {
        UserView {
            limits: u.limits(),
            key_policy: u.key_policy().into(),
            id: u.id,
            email: u.email,
            role: u.role.into(),
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamView {
    pub id: i64,
    pub name: String,
    pub limits: QuotaLimits,
    pub key_policy: KeyPolicyView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<team::Model> for TeamView {
    fn from(t: team::Model) -> Self {
        TeamView {
            limits: t.limits(),
            key_policy: t.key_policy().into(),
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// What the keys a member creates for themselves may have at most (set by admins on users
/// and teams): a key takes these where it asks for nothing, and may not go above them.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyPolicyView {
    /// The models such a key may allow; `null`: any.
    pub allowed_models: Option<Vec<String>>,
    /// The most each such key may have; a limit left `null` falls back to the owner's own.
    pub key_limits: QuotaLimits,
}

impl From<KeyPolicy> for KeyPolicyView {
    fn from(p: KeyPolicy) -> Self {
        KeyPolicyView {
            allowed_models: p.allowed_models,
            key_limits: p.key_limits,
        }
    }
}

/// Changes to a key policy: omit a field to keep it, `null` to clear it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicyPatch {
    #[serde(default, deserialize_with = "tollgate_core::limits::double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
    pub key_limits: Option<LimitChanges>,
}

impl From<KeyPolicyPatch> for PolicyChanges {
    fn from(p: KeyPolicyPatch) -> Self {
        PolicyChanges {
            allowed_models: p.allowed_models,
            key_limits: p.key_limits.unwrap_or_default(),
        }
    }
}

/// An API key as listed: its id and prefix, never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key's public id (`key_…`), used in URLs.
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to recognise the key.
    pub prefix: String,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    /// Models the key may use; `null` allows all.
    pub allowed_models: Option<Vec<String>>,
    /// Listed inline (the OpenAPI document shows them as the key's own fields).
    #[serde(flatten)]
    pub limits: QuotaLimits,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Until when the secret replaced by the last rotation still works.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether its requests use the response cache.
    pub cache_enabled: bool,
}

impl From<api_key::Model> for KeyView {
    fn from(k: api_key::Model) -> Self {
        KeyView {
            allowed_models: k.allowed_models(),
            limits: k.limits(),
            id: k.public_id,
            name: k.name,
            prefix: k.display_prefix,
            user_id: k.user_id,
            team_id: k.team_id,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            previous_secret_valid_until: k
                .previous_expires_at
                .filter(|_| k.previous_secret_hash.is_some()),
            created_at: k.created_at,
            updated_at: k.updated_at,
            cache_enabled: k.cache_enabled,
        }
    }
}

/// A provider credential as listed: the secret masked to its last four characters.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    /// e.g. `…x4Kq`.
    pub api_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<provider_credential::Model> for ProviderView {
    fn from(c: provider_credential::Model) -> Self {
        ProviderView {
            id: c.id,
            name: c.name,
            kind: c.kind,
            base_url: c.base_url,
            api_key: format!("…{}", c.secret_last4),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}
