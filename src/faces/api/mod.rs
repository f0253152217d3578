//! The operator face: JSON over HTTP at `/api/v1`, plus health and the public CA certificate.
//!
//! Handlers only translate HTTP: they extract, call a service on [`Lanyard`], and shape the answer.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::context::Ctx;
use crate::error::Error;

pub mod ade;
pub mod audit;
pub mod auth;
pub mod cases;
pub mod ddm;
pub mod devices;
pub mod extract;
pub mod groups;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod operators;
pub mod profiles;
pub mod push;
pub mod register;
pub mod reissue;
pub mod schedules;
pub mod schemas;

/// Every route of the API faces, each `/api/v1` route registered with its OpenAPI operation
/// (`routes!`): the router and the document come from this one list.
pub fn routes() -> OpenApiRouter<Ctx> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::whoami))
        .routes(routes!(operators::create, operators::list))
        .routes(routes!(operators::update))
        .routes(routes!(operators::create_token, operators::list_tokens))
        .routes(routes!(operators::revoke_token))
        .routes(routes!(devices::create_enrollment_token, devices::list_enrollment_tokens))
        .routes(routes!(devices::revoke_enrollment_token))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::devices_csv))
        .routes(routes!(devices::get_device, cases::retire_device))
        .routes(routes!(reissue::activation_lock_bypass))
        .routes(routes!(ddm::device_declarations))
        .routes(routes!(ddm::get_group_declarations, ddm::put_group_declarations))
        .routes(routes!(ddm::create_os_update, ddm::list_os_updates))
        .routes(routes!(ddm::os_update_report))
        .routes(routes!(ddm::get_os_update, ddm::cancel_os_update))
        .routes(routes!(reissue::return_one))
        .routes(routes!(reissue::return_many))
        .routes(routes!(cases::lock_pin))
        .routes(routes!(cases::open_case, cases::list_cases))
        .routes(routes!(cases::report))
        .routes(routes!(cases::get_case))
        .routes(routes!(cases::add_action))
        .routes(routes!(cases::quarantine))
        .routes(routes!(cases::evidence))
        .routes(routes!(cases::evidence_item))
        .routes(routes!(cases::custody))
        .routes(routes!(cases::custody_html))
        .routes(routes!(cases::custody_pdf))
        .routes(routes!(cases::request_release))
        .routes(routes!(cases::request_disposal))
        .routes(routes!(cases::approve_disposal))
        .routes(routes!(cases::approve_request))
        .routes(routes!(cases::reject_request))
        .routes(routes!(cases::approve_dispose_request))
        .routes(routes!(cases::reject_dispose_request))
        .routes(routes!(cases::notifications))
        .routes(routes!(devices::device_command, devices::device_commands))
        .routes(routes!(devices::bulk_command))
        .routes(routes!(devices::get_command, devices::cancel_command))
        .routes(routes!(push::put_push_cert, push::get_push_cert))
        .routes(routes!(push::create_push_cert_request))
        .routes(routes!(ade::public_key))
        .routes(routes!(ade::upload_token, ade::list_tokens))
        .routes(routes!(ade::get_token, ade::delete_token))
        .routes(routes!(ade::sync_token))
        .routes(routes!(ade::list_devices))
        .routes(routes!(ade::create_profile, ade::list_profiles))
        .routes(routes!(ade::get_profile, ade::update_profile, ade::delete_profile))
        .routes(routes!(ade::assign_profile))
        .routes(routes!(ade::get_assignment, ade::put_assignment))
        .routes(routes!(push::get_push_cert_request))
        .routes(routes!(push::push_many))
        .routes(routes!(push::push_device))
        .routes(routes!(push::device_queue))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(register::create_person, register::list_people))
        .routes(routes!(register::get_person, register::update_person))
        .routes(routes!(register::leave))
        .routes(routes!(register::create_aup, register::list_aups))
        .routes(routes!(register::get_aup))
        .routes(routes!(register::create_signature))
        .routes(routes!(register::void_signature))
        .routes(routes!(register::create_grant))
        .routes(routes!(register::revoke_grant))
        .routes(routes!(register::create_assignment))
        .routes(routes!(register::end_assignment))
        .routes(routes!(register::device_holders))
        .routes(routes!(register::due))
        .routes(routes!(register::report))
        .routes(routes!(register::export_csv))
        .routes(routes!(register::import))
        .routes(routes!(profiles::create_profile, profiles::list_profiles))
        .routes(routes!(profiles::get_profile, profiles::update_profile, profiles::delete_profile))
        .routes(routes!(profiles::download_profile))
        .routes(routes!(profiles::profile_status))
        .routes(routes!(profiles::list_changes))
        .routes(routes!(profiles::get_change))
        .routes(routes!(profiles::approve_change))
        .routes(routes!(profiles::reject_change))
        .routes(routes!(groups::create_group, groups::list_groups))
        .routes(routes!(groups::get_group, groups::update_group, groups::delete_group))
        .routes(routes!(groups::add_members, groups::list_members))
        .routes(routes!(groups::remove_member))
        .routes(routes!(groups::assign_profile))
        .routes(routes!(groups::unassign_profile))
        .routes(routes!(schedules::get_timetable, schedules::put_timetable))
        .routes(routes!(schedules::create_schedule, schedules::list_schedules))
        .routes(routes!(schedules::drift))
        .routes(routes!(schedules::delete_schedule))
        .routes(routes!(schedules::device_profiles))
        .routes(routes!(schedules::filevault_key))
        .routes(routes!(schedules::compliance))
        .routes(routes!(openapi_json))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(extract::API_BODY_LIMIT));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::ca_pem))
        // Documented in `openapi` (their handlers' modules are not annotated).
        .route("/metrics", get(metrics::metrics))
}

pub fn router() -> Router<Ctx> {
    routes().into()
}

/// The OpenAPI document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().into_openapi())
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This document",
    responses((status = 200, description = "OK", body = Object)),
    security(())
)]
async fn openapi_json() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| openapi().to_json().expect("the OpenAPI document serializes"));
    ([(axum::http::header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

pub async fn not_found(uri: Uri) -> Error {
    Error::NotFound(format!("no such endpoint: {}", uri.path()))
}

/// `201 Created` with a JSON body.
pub fn created<T: serde::Serialize>(body: T) -> (StatusCode, axum::Json<T>) {
    (StatusCode::CREATED, axum::Json(body))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `(METHOD, path)` the API router serves, read from axum's `Debug` of the router
    /// (axum has no other way to list its routes). Checked to find the routes it must, so a
    /// change in that output fails here rather than passing with nothing found.
    fn routed() -> BTreeSet<(String, String)> {
        let dump = format!("{:?}", router().merge(crate::faces::device::router()));
        let paths_router = dump.split("fallback_router:").next().expect("a path router");
        let (routes, node) = paths_router.split_once("node: Node { paths: {").expect("the route paths");
        let mut path_of = std::collections::HashMap::new();
        for entry in node.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once("): \"").expect("RouteId(n): \"path\"");
            let path = rest.split('"').next().unwrap();
            path_of.insert(id.to_owned(), path.to_owned());
        }
        let methods = ["get", "head", "delete", "options", "patch", "post", "put", "trace", "connect"];
        let mut out = BTreeSet::new();
        for entry in routes.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once("): ").unwrap();
            let path = path_of.get(id).unwrap_or_else(|| panic!("route {id} has no path"));
            let body = rest.strip_prefix("MethodRouter(MethodRouter { ").unwrap_or_else(|| panic!("{path} is not a method router: {rest}"));
            for field in body.split(", ") {
                if let Some((name, value)) = field.split_once(": ")
                    && methods.contains(&name)
                    && value != "None"
                {
                    out.insert((name.to_uppercase(), path.clone()));
                }
            }
        }
        assert!(out.contains(&("POST".into(), "/api/v1/auth/login".into())), "{out:?}");
        assert!(out.contains(&("PUT".into(), "/mdm/connect".into())), "{out:?}");
        assert!(out.len() > 100, "{out:?}");
        out
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "head", "delete", "options", "patch", "post", "put", "trace"].contains(&method.as_str()) {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    /// The route-coverage test: every route the router serves is in the OpenAPI document, and
    /// every operation in the document is a route.
    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let routed = routed();
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routed but not in the OpenAPI document (give the handler a #[utoipa::path] and register it with routes!): {undocumented:?}"
        );
        assert!(unrouted.is_empty(), "in the OpenAPI document but not routed: {unrouted:?}");
    }

    /// `LANYARD_WRITE_OPENAPI=path cargo test --lib faces::api::tests::write_document` writes the
    /// document, for reading or validating it outside the server.
    #[test]
    fn write_document() {
        if let Ok(path) = std::env::var("LANYARD_WRITE_OPENAPI") {
            std::fs::write(path, openapi().to_pretty_json().unwrap()).unwrap();
        }
    }
}
