//! `GET /v1/models` and `GET /v1/models/{id}`, answered from the config without an upstream
//! call; rendered once at start-up.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::json;
use tollgate_core::config::Config;

pub struct ModelCatalog {
    list: Bytes,
    by_id: HashMap<String, Bytes>,
}

impl ModelCatalog {
    pub fn new(config: &Config, created: u64) -> Self {
        let mut by_id = HashMap::new();
        let mut data = Vec::with_capacity(config.models.len());
        for model in &config.models {
            let entry = json!({
                "id": model.name,
                "object": "model",
                "created": created,
                "owned_by": model.owned_by,
            });
            let rendered = Bytes::from(entry.to_string());
            // An alias answers with the model it names.
            for name in std::iter::once(&model.name).chain(&model.aliases) {
                by_id.insert(name.clone(), rendered.clone());
            }
            data.push(entry);
        }
        let list = Bytes::from(json!({ "object": "list", "data": data }).to_string());
        ModelCatalog { list, by_id }
    }

    pub fn list(&self) -> Bytes {
        self.list.clone()
    }

    pub fn get(&self, id: &str) -> Option<Bytes> {
        self.by_id.get(id).cloned()
    }
}
