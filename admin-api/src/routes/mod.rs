//! The admin API's routes, each annotated for the OpenAPI document.

pub(crate) mod audit;
mod cache;
pub(crate) mod keys;
mod outcomes;
mod providers;
pub(crate) mod routing;
mod session;
mod teams;
pub(crate) mod usage;
pub(crate) mod users;
mod views;

use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{AdminState, openapi::ApiDoc};

pub fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(session::login))
        .routes(routes!(session::me))
        .routes(routes!(session::refresh))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(teams::list, teams::create))
        .routes(routes!(teams::get, teams::update, teams::delete))
        .routes(routes!(teams::add_member, teams::remove_member))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::get, keys::update))
        .routes(routes!(keys::revoke))
        .routes(routes!(keys::rotate))
        .routes(routes!(providers::list, providers::create))
        .routes(routes!(
            providers::get,
            providers::update,
            providers::delete
        ))
        .routes(routes!(usage::totals))
        .routes(routes!(usage::series))
        .routes(routes!(usage::export))
        .routes(routes!(outcomes::outcomes))
        .routes(routes!(routing::list))
        .routes(routes!(audit::list))
        .routes(routes!(cache::purge))
        .routes(routes!(cache::stats))
}
