//! Provider credentials: upstream API keys kept encrypted (AES-256-GCM, the row id as
//! associated data). Listings show only the last four characters; the plaintext is opened
//! only by the gateway process when it needs to call the provider.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryOrder, Set,
    TransactionTrait,
};
use serde_json::json;

use super::{StoreError, audit::Actor, audit::AuditedChange, entity::provider_credential};
use crate::secrets::{Sealed, ServerSecret};

pub const KINDS: [&str; 4] = ["openai", "openai-compatible", "azure-openai", "anthropic"];

pub struct NewCredential {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub secret: String,
}

impl std::fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Changes to a credential; `None` keeps a field, `base_url: Some(None)` clears it.
#[derive(Default)]
pub struct CredentialChanges {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub base_url: Option<Option<String>>,
    pub secret: Option<String>,
}

fn check_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(name.to_string())
    } else {
        Err(StoreError::invalid(
            "name",
            "must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
        ))
    }
}

fn check_kind(kind: &str) -> Result<String, StoreError> {
    if KINDS.contains(&kind) {
        Ok(kind.to_string())
    } else {
        Err(StoreError::invalid(
            "kind",
            format!(
                "unknown kind {kind:?}: expected one of {}",
                KINDS.join(", ")
            ),
        ))
    }
}

fn check_base_url(url: &str) -> Result<String, StoreError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(url.to_string())
        }
        _ => Err(StoreError::invalid(
            "base_url",
            format!("{url:?} is not an http(s) URL"),
        )),
    }
}

fn check_secret(secret: &str) -> Result<(), StoreError> {
    if secret.trim().is_empty() || secret.len() > 8192 {
        return Err(StoreError::invalid(
            "api_key",
            "must be 1 to 8192 characters",
        ));
    }
    Ok(())
}

fn last4(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

fn summary(c: &provider_credential::Model) -> serde_json::Value {
    json!({ "name": c.name, "kind": c.kind, "base_url": c.base_url, "secret_last4": c.secret_last4 })
}

fn set_secret(
    active: &mut provider_credential::ActiveModel,
    secret: &ServerSecret,
    id: i64,
    plaintext: &str,
) -> Result<(), StoreError> {
    let sealed = secret.seal(id, plaintext)?;
    active.secret_ciphertext = Set(sealed.ciphertext);
    active.secret_nonce = Set(sealed.nonce);
    active.key_id = Set(sealed.key_id);
    active.secret_last4 = Set(last4(plaintext));
    Ok(())
}

pub async fn create_credential<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    secret: &ServerSecret,
    new: NewCredential,
    actor: &Actor,
) -> Result<provider_credential::Model, StoreError> {
    let name = check_name(&new.name)?;
    let kind = check_kind(&new.kind)?;
    let base_url = new.base_url.as_deref().map(check_base_url).transpose()?;
    check_secret(&new.secret)?;
    let now = Utc::now();
    let txn = AuditedChange::begin(db, actor).await?;
    // The row id is the ciphertext's associated data, so the row exists before the secret
    // is sealed into it (both inside this transaction).
    let row = provider_credential::ActiveModel {
        name: Set(name.clone()),
        kind: Set(kind),
        base_url: Set(base_url),
        secret_ciphertext: Set(Vec::new()),
        secret_nonce: Set(Vec::new()),
        key_id: Set(String::new()),
        secret_last4: Set(String::new()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn.conn())
    .await
    .map_err(|e| {
        StoreError::from_insert(e, "name", format!("a provider named {name} already exists"))
    })?;
    let id = row.id;
    let mut active = row.into_active_model();
    set_secret(&mut active, secret, id, &new.secret)?;
    let created = active.update(txn.conn()).await?;
    txn.commit(
        "provider.create",
        "provider",
        id,
        json!({ "after": summary(&created) }),
    )
    .await?;
    Ok(created)
}

pub async fn list_credentials<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<provider_credential::Model>, StoreError> {
    Ok(provider_credential::Entity::find()
        .order_by_asc(provider_credential::Column::Id)
        .all(db)
        .await?)
}

pub async fn get_credential<C: ConnectionTrait>(
    db: &C,
    id: i64,
) -> Result<provider_credential::Model, StoreError> {
    provider_credential::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("provider {id}")))
}

pub async fn update_credential<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    secret: &ServerSecret,
    id: i64,
    changes: CredentialChanges,
    actor: &Actor,
) -> Result<provider_credential::Model, StoreError> {
    let name = changes.name.as_deref().map(check_name).transpose()?;
    let kind = changes.kind.as_deref().map(check_kind).transpose()?;
    let base_url = match &changes.base_url {
        Some(Some(url)) => Some(Some(check_base_url(url)?)),
        Some(None) => Some(None),
        None => None,
    };
    if let Some(s) = &changes.secret {
        check_secret(s)?;
    }
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_credential(txn.conn(), id).await?;
    let mut active = before.clone().into_active_model();
    if let Some(name) = name.clone() {
        active.name = Set(name);
    }
    if let Some(kind) = kind {
        active.kind = Set(kind);
    }
    if let Some(base_url) = base_url {
        active.base_url = Set(base_url);
    }
    if let Some(plaintext) = &changes.secret {
        set_secret(&mut active, secret, id, plaintext)?;
    }
    active.updated_at = Set(Utc::now());
    let after = active.update(txn.conn()).await.map_err(|e| {
        StoreError::from_insert(
            e,
            "name",
            format!(
                "a provider named {} already exists",
                name.as_deref().unwrap_or_default()
            ),
        )
    })?;
    txn.commit(
        "provider.update",
        "provider",
        id,
        json!({ "before": summary(&before), "after": summary(&after), "secret_changed": changes.secret.is_some() }),
    )
    .await?;
    Ok(after)
}

pub async fn delete_credential<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: i64,
    actor: &Actor,
) -> Result<(), StoreError> {
    let txn = AuditedChange::begin(db, actor).await?;
    let before = get_credential(txn.conn(), id).await?;
    provider_credential::Entity::delete_by_id(id)
        .exec(txn.conn())
        .await?;
    txn.commit(
        "provider.delete",
        "provider",
        id,
        json!({ "before": summary(&before) }),
    )
    .await?;
    Ok(())
}

/// Decrypts a credential's secret. Fails with [`crate::secrets::SecretError::Tampered`] if
/// the stored ciphertext, nonce or row id was altered.
pub fn open_secret(
    secret: &ServerSecret,
    credential: &provider_credential::Model,
) -> Result<String, StoreError> {
    let sealed = Sealed {
        ciphertext: credential.secret_ciphertext.clone(),
        nonce: credential.secret_nonce.clone(),
        key_id: credential.key_id.clone(),
    };
    Ok(secret.open(credential.id, &sealed)?)
}
