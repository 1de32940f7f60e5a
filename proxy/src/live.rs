//! What a config reload replaces: the route table (providers, deployments, prices and
//! routing settings) and the model list. Requests take a snapshot when they are admitted and
//! keep it to the end, so a reload never changes a request, or cuts a stream, under way.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{downstream::models::ModelCatalog, routing::RouteTable};

pub struct Live {
    pub routes: Arc<RouteTable>,
    pub models: ModelCatalog,
}

/// The current snapshot, swapped whole by a reload.
pub type LiveConfig = Arc<ArcSwap<Live>>;

pub fn live(routes: Arc<RouteTable>, models: ModelCatalog) -> LiveConfig {
    Arc::new(ArcSwap::from_pointee(Live { routes, models }))
}
