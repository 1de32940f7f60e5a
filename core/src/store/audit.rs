//! The audit trail: every change through the admin API or the CLI writes one row, inside the
//! transaction of the change itself, so a change and its record commit or fail together.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, Set, TransactionSession, TransactionTrait,
};

use super::entity::audit_log;

/// Who made a change, as recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor {
            name: name.to_string(),
            ip: None,
        }
    }
}

/// Writes one audit row. `summary` holds before/after values and must never hold secrets.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: impl ToString,
    summary: serde_json::Value,
) -> Result<(), DbErr> {
    audit_log::ActiveModel {
        occurred_at: Set(Utc::now()),
        actor: Set(actor.name.clone()),
        action: Set(action.to_string()),
        target_type: Set(target_type.to_string()),
        target_id: Set(Some(target_id.to_string())),
        summary: Set(summary.to_string()),
        request_ip: Set(actor.ip.clone()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// A change under way: its reads and writes and its audit row share one transaction, so
/// they commit together or not at all (dropped without `commit`, nothing is written).
pub struct AuditedChange<'a, T> {
    txn: T,
    actor: &'a Actor,
}

impl<'a, T: ConnectionTrait + TransactionSession> AuditedChange<'a, T> {
    pub async fn begin<C: TransactionTrait<Transaction = T>>(
        db: &C,
        actor: &'a Actor,
    ) -> Result<Self, DbErr> {
        Ok(AuditedChange {
            txn: db.begin().await?,
            actor,
        })
    }

    /// The change's transaction, for its reads and writes.
    pub fn conn(&self) -> &T {
        &self.txn
    }

    /// Writes the audit row and commits the change.
    pub async fn commit(
        self,
        action: &str,
        target_type: &str,
        target_id: impl ToString,
        summary: serde_json::Value,
    ) -> Result<(), DbErr> {
        record(
            &self.txn,
            self.actor,
            action,
            target_type,
            target_id,
            summary,
        )
        .await?;
        self.txn.commit().await
    }
}
