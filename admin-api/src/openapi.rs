//! The OpenAPI document: paths and schemas come from the handlers' annotations (collected
//! by `utoipa-axum` as the router is built); this adds the title and the security scheme.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
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

/// The whole OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::routes::router().split_for_parts().1
}
