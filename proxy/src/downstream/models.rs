//! `GET /v1/models` and `GET /v1/models/{id}`, answered from the config without an upstream
//! call. The full list is rendered once at start-up; a key restricted to some models sees
//! only those (rendered for it, on this rare path).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};
use tollgate_core::config::Config;

pub struct ModelCatalog {
    list: Bytes,
    /// Every model with the names it answers to (its own first, then its aliases).
    models: Vec<(Vec<String>, Value)>,
    /// Name or alias → (the model's own name, its rendered entry).
    by_id: HashMap<String, (String, Bytes)>,
}

/// Whether the caller may use a model, asked by the name it used and the model's own name.
pub type Allows<'a> = &'a dyn Fn(&str, &str) -> bool;

impl ModelCatalog {
    pub fn new(config: &Config, created: u64) -> Self {
        let mut by_id = HashMap::new();
        let mut models = Vec::with_capacity(config.models.len());
        for model in &config.models {
            let entry = json!({
                "id": model.name,
                "object": "model",
                "created": created,
                "owned_by": model.owned_by,
            });
            let rendered = Bytes::from(entry.to_string());
            let names: Vec<String> = std::iter::once(&model.name)
                .chain(&model.aliases)
                .cloned()
                .collect();
            // An alias answers with the model it names.
            for name in &names {
                by_id.insert(name.clone(), (model.name.clone(), rendered.clone()));
            }
            models.push((names, entry));
        }
        let data: Vec<&Value> = models.iter().map(|(_, entry)| entry).collect();
        let list = Bytes::from(json!({ "object": "list", "data": data }).to_string());
        ModelCatalog {
            list,
            models,
            by_id,
        }
    }

    /// The models the caller may use (`None`: every model).
    pub fn list(&self, allows: Option<Allows<'_>>) -> Bytes {
        let Some(allows) = allows else {
            return self.list.clone();
        };
        let data: Vec<&Value> = self
            .models
            .iter()
            .filter(|(names, _)| names.iter().any(|name| allows(name, &names[0])))
            .map(|(_, entry)| entry)
            .collect();
        Bytes::from(json!({ "object": "list", "data": data }).to_string())
    }

    /// The model `id` names, if the caller may use it by that name.
    pub fn get(&self, id: &str, allows: Option<Allows<'_>>) -> Option<Bytes> {
        let (own, rendered) = self.by_id.get(id)?;
        allows
            .is_none_or(|allows| allows(id, own))
            .then(|| rendered.clone())
    }
}
