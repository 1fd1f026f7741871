//! The OpenAPI document, generated from the handlers' annotations (`utoipa`), served at
//! `/v1/openapi.json` and printed by `horde-cloud openapi`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, blobs, health, query, sync};

#[derive(OpenApi)]
#[openapi(
    info(title = "Code Horde cloud API", description = "Multi-tenant system of record for autonomous software development. Every call but signup, health and this document takes `Authorization: Bearer KEY`. Errors are `{ \"error\": { \"code\", \"message\" } }`."),
    paths(
        health::healthz, health::readyz, health::metrics,
        admin::signup, admin::me, admin::add_user, admin::list_users,
        admin::create_key, admin::list_keys, admin::revoke_key,
        admin::register_device, admin::list_devices, admin::get_device,
        admin::create_project, admin::put_project, admin::list_projects, admin::get_project,
        admin::list_timelines,
        sync::sync, sync::cursor,
        query::events, query::event, query::tail, query::history, query::manifest,
        blobs::put_blob, blobs::head_blob, blobs::get_blob,
    ),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
