//! The OpenAPI document: paths and schemas come from the handlers' annotations (collected
//! by `utoipa-axum` as the router is built); this adds the title and the security scheme.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        RefOr, Schema,
        schema::{ArrayItems, Object},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate admin API",
        description = "Users, teams, API keys, provider credentials, usage and audit log of a Tollgate gateway. Authenticate with `Authorization: Bearer <token>` from `POST /api/auth/login`, or with the operator's master key.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "auth", description = "Sessions"),
        (name = "users", description = "People who use the admin API"),
        (name = "teams", description = "Groups of users"),
        (name = "keys", description = "Client API keys"),
        (name = "providers", description = "Encrypted upstream credentials"),
        (name = "usage", description = "Metered requests, tokens and cost"),
        (name = "audit", description = "Who changed what"),
        (name = "cache", description = "The response cache: purge and statistics"),
        (name = "routes", description = "Models and deployments the gateway serves"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A session token from POST /api/auth/login, or the master key",
                    ))
                    .build(),
            ),
        );
    }
}

/// Shows the limits a key's view flattens (`#[serde(flatten)]`) as the key's own fields, as
/// they are on the wire, instead of the `allOf` utoipa writes for a flattened field.
struct InlineLimits;

const LIMITS_REF: &str = "#/components/schemas/LimitsView";

impl InlineLimits {
    /// Applied to the finished document: the router adds the handlers' schemas after the
    /// `OpenApi` derive's modifiers ran.
    fn apply(openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(RefOr::T(Schema::Object(limits))) = components.schemas.get("LimitsView").cloned()
        else {
            return;
        };
        for schema in components.schemas.values_mut() {
            inline_limits(schema, &limits);
        }
    }
}

/// Replaces `allOf: [LimitsView, {own fields}]` by one object, wherever it is nested.
fn inline_limits(schema: &mut RefOr<Schema>, limits: &Object) {
    let RefOr::T(inner) = schema else {
        return;
    };
    match inner {
        Schema::AllOf(all_of) => {
            let flattens_limits = all_of
                .items
                .iter()
                .any(|item| matches!(item, RefOr::Ref(r) if r.ref_location == LIMITS_REF));
            let own = all_of.items.iter().find_map(|item| match item {
                RefOr::T(Schema::Object(own)) => Some(own.clone()),
                _ => None,
            });
            if let (true, 2, Some(mut own)) = (flattens_limits, all_of.items.len(), own) {
                own.properties.extend(limits.properties.clone());
                if own.description.is_none() {
                    own.description = all_of.description.clone();
                }
                *schema = RefOr::T(Schema::Object(own));
            } else {
                all_of
                    .items
                    .iter_mut()
                    .for_each(|s| inline_limits(s, limits));
            }
        }
        Schema::Object(object) => object
            .properties
            .values_mut()
            .for_each(|s| inline_limits(s, limits)),
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                inline_limits(items, limits);
            }
        }
        _ => {}
    }
}

/// The whole OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    finish(crate::routes::router().split_for_parts().1)
}

/// The document as the router collected it, with the shapes it cannot derive put right.
pub fn finish(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    InlineLimits::apply(&mut openapi);
    openapi
}
