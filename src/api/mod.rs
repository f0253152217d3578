//! The operator face: JSON over HTTP at `/api/v1`, plus health and the public CA certificate.
//!
//! Handlers only translate HTTP: they extract, call a service on [`Lanyard`], and shape the answer.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get, patch, post, put};

use crate::context::Ctx;
use crate::error::Error;

pub mod audit;
pub mod auth;
pub mod cases;
pub mod devices;
pub mod extract;
pub mod groups;
pub mod health;
pub mod mdm;
pub mod operators;
pub mod profiles;
pub mod push;
pub mod register;
pub mod schedules;

pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router() -> Router<Ctx> {
    let v1 = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/whoami", get(auth::whoami))
        .route("/operators", post(operators::create).get(operators::list))
        .route("/operators/{id}", patch(operators::update))
        .route("/api-tokens", post(operators::create_token).get(operators::list_tokens))
        .route("/api-tokens/{id}", delete(operators::revoke_token))
        .route("/enrollment-tokens", post(devices::create_enrollment_token).get(devices::list_enrollment_tokens))
        .route("/enrollment-tokens/{id}", delete(devices::revoke_enrollment_token))
        .route("/devices", get(devices::list_devices))
        .route("/devices.csv", get(devices::devices_csv))
        .route("/devices/{udid}", get(devices::get_device).delete(cases::retire_device))
        .route("/devices/{udid}/lock-pin", get(cases::lock_pin))
        .route("/cases", post(cases::open_case).get(cases::list_cases))
        .route("/cases/report", get(cases::report))
        .route("/cases/{id}", get(cases::get_case))
        .route("/cases/{id}/actions", post(cases::add_action))
        .route("/cases/{id}/devices", post(cases::quarantine))
        .route("/cases/{id}/evidence", get(cases::evidence))
        .route("/cases/{id}/evidence/{item}", get(cases::evidence_item))
        .route("/cases/{id}/custody", get(cases::custody))
        .route("/cases/{id}/custody.html", get(cases::custody_html))
        .route("/cases/{id}/custody.pdf", get(cases::custody_pdf))
        .route("/cases/{id}/release-requests", post(cases::request_release))
        .route("/cases/{id}/evidence/dispose-requests", post(cases::request_disposal))
        .route("/cases/{id}/evidence/dispose-requests/{rid}/approve", post(cases::approve_disposal))
        .route("/release-requests/{id}/approve", post(cases::approve_request))
        .route("/release-requests/{id}/reject", post(cases::reject_request))
        .route("/dispose-requests/{id}/approve", post(cases::approve_request))
        .route("/dispose-requests/{id}/reject", post(cases::reject_request))
        .route("/notifications", get(cases::notifications))
        .route("/devices/{udid}/commands", post(devices::device_command).get(devices::device_commands))
        .route("/commands", post(devices::bulk_command))
        .route("/commands/{uuid}", get(devices::get_command).delete(devices::cancel_command))
        .route("/push-cert", put(push::put_push_cert).get(push::get_push_cert))
        .route("/push", post(push::push_many))
        .route("/devices/{udid}/push", post(push::push_device))
        .route("/devices/{udid}/queue", get(push::device_queue))
        .route("/audit", get(audit::list))
        .route("/audit/verify", get(audit::verify))
        .route("/people", post(register::create_person).get(register::list_people))
        .route("/people/{id}", get(register::get_person).patch(register::update_person))
        .route("/people/{id}/leave", post(register::leave))
        .route("/aups", post(register::create_aup).get(register::list_aups))
        .route("/aups/{id}", get(register::get_aup))
        .route("/signatures", post(register::create_signature))
        .route("/signatures/{id}/void", post(register::void_signature))
        .route("/grants", post(register::create_grant))
        .route("/grants/{id}/revoke", post(register::revoke_grant))
        .route("/assignments", post(register::create_assignment))
        .route("/assignments/{id}/end", post(register::end_assignment))
        .route("/devices/{udid}/holders", get(register::device_holders))
        .route("/register/due", get(register::due))
        .route("/register/report", get(register::report))
        .route("/register/export.csv", get(register::export_csv))
        .route("/register/import", post(register::import))
        .route("/profiles", post(profiles::create_profile).get(profiles::list_profiles))
        .route("/profiles/{id}", get(profiles::get_profile).put(profiles::update_profile).delete(profiles::delete_profile))
        .route("/profiles/{id}/mobileconfig", get(profiles::download_profile))
        .route("/profiles/{id}/status", get(profiles::profile_status))
        .route("/filtering/changes", get(profiles::list_changes))
        .route("/filtering/changes/{id}", get(profiles::get_change))
        .route("/filtering/changes/{id}/approve", post(profiles::approve_change))
        .route("/filtering/changes/{id}/reject", post(profiles::reject_change))
        .route("/groups", post(groups::create_group).get(groups::list_groups))
        .route("/groups/{id}", get(groups::get_group).patch(groups::update_group).delete(groups::delete_group))
        .route("/groups/{id}/members", post(groups::add_members).get(groups::list_members))
        .route("/groups/{id}/members/{udid}", delete(groups::remove_member))
        .route("/groups/{id}/profiles", post(groups::assign_profile))
        .route("/groups/{id}/profiles/{pid}", delete(groups::unassign_profile))
        .route("/timetable", get(schedules::get_timetable).put(schedules::put_timetable))
        .route("/schedules", post(schedules::create_schedule).get(schedules::list_schedules))
        .route("/schedules/drift", get(schedules::drift))
        .route("/schedules/{id}", delete(schedules::delete_schedule))
        .route("/devices/{udid}/profiles", get(schedules::device_profiles))
        .route("/devices/{udid}/filevault-key", get(schedules::filevault_key))
        .route("/compliance", get(schedules::compliance))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(extract::API_BODY_LIMIT));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/mdm/ca.pem", get(health::ca_pem))
        .route("/mdm/enroll", get(mdm::enroll))
        .route("/mdm/checkin", put(mdm::checkin).post(mdm::checkin))
        .route("/mdm/connect", put(mdm::connect).post(mdm::connect))
        .route("/scep", get(mdm::scep_endpoint).post(mdm::scep_endpoint))
        .layer(DefaultBodyLimit::max(mdm::CONNECT_BODY_LIMIT))
}

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn not_found(uri: Uri) -> Error {
    Error::NotFound(format!("no such endpoint: {}", uri.path()))
}

/// `201 Created` with a JSON body.
pub fn created<T: serde::Serialize>(body: T) -> (StatusCode, axum::Json<T>) {
    (StatusCode::CREATED, axum::Json(body))
}
