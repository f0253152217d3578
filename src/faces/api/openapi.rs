//! The OpenAPI document at `/api/v1/openapi.json`, generated from the code.
//!
//! Each `/api/v1` handler carries a `#[utoipa::path]` with its summary, roles, parameters,
//! request body and responses, and is registered with `routes!` in [`super::routes`]: the route
//! and its operation come from the same line, so a route cannot be served without being
//! documented (a test walks the router to make sure, `super::tests`). The request and response
//! schemas are derived from the Rust types the handlers take and return (`#[derive(ToSchema)]`),
//! so they follow the code. This module holds what has no handler of its own here: the document's
//! header, the one error shape and the reusable 422 responses, the device face's operations
//! (their handlers live in `api::mdm` and `metrics`), a few schemas for types whose modules do
//! not derive one yet, and the small helpers the derives use for string enums.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};
use utoipa::{Modify, PartialSchema, ToResponse, ToSchema};

use crate::schema::{hand_schema, string_enum};

/// The header of the document and what no handler here declares. The paths come from
/// [`super::routes`].
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Lanyard",
        description = "Mobile-device management for schools. Operator API: JSON, bearer tokens (session JWT from /auth/login or an API token). Every error is {\"error\",\"code\"}. A body that is not JSON is 400; a wrong type, an unknown value, a missing or unknown field, or a key repeated in any JSON object is 422 with \"field\" naming its path (e.g. \"command.PIN\", \"targets[0]\")."
    ),
    servers((url = "/")),
    security(("bearer" = [])),
    paths(device_enroll, device_ade_enroll, device_checkin, device_connect, device_scep_get, device_scep_post, meta_metrics),
    components(
        schemas(ErrorBody, NeedsSupervisionError, NoUnlockTokenError),
        responses(Unprocessable, CommandUnprocessable)
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Sessions and API tokens"),
        (name = "operators", description = "The people who run Lanyard"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "meta", description = "Health, metrics and this document"),
        (name = "enrolment", description = "Enrolment tokens"),
        (name = "devices", description = "The inventory, a device's profiles, FileVault keys, compliance"),
        (name = "commands", description = "MDM commands"),
        (name = "push", description = "The push certificate and waking devices"),
        (name = "ade", description = "Apple School Manager: server tokens, device sync, the devices it assigned"),
        (name = "device", description = "The device face: Apple's MDM protocol and SCEP"),
        (name = "register", description = "The user-access register"),
        (name = "safeguarding", description = "Cases, quarantine and evidence"),
        (name = "profiles", description = "The profile library"),
        (name = "filtering", description = "Filtering change control"),
        (name = "groups", description = "Device groups, and the declarations their devices get"),
        (name = "os-updates", description = "OS updates by deadline, through Declarative Device Management"),
        (name = "schedules", description = "The timetable and lesson-time schedules")
    )
)]
pub struct ApiDoc;

/// `bearer`: a session JWT from `POST /api/v1/auth/login`, or an API token.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// What every operation shares, added once the paths are in: the error shape as the default
/// response, and `security: []` (no token needed) where an operation says `security(())`.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    unique_operation_ids(&mut doc);
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            finish_operation(op);
        }
    }
    doc
}

fn operations(item: &mut utoipa::openapi::path::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.options, &mut item.head, &mut item.patch, &mut item.trace]
        .into_iter()
        .flatten()
}

/// An operation id is the handler's name, which several modules share (`list`, `create`): those
/// get their tag in front (`operators_list`, `audit_list`).
fn unique_operation_ids(doc: &mut OpenApi) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            *seen.entry(op.operation_id.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    for item in doc.paths.paths.values_mut() {
        // One handler for several methods (`method(put, post)`): the method after it.
        let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
        let shared = operations(item).filter_map(|op| op.operation_id.clone()).collect::<Vec<_>>();
        for (op, method) in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .zip(methods)
        .filter_map(|(op, m)| op.as_mut().map(|op| (op, m)))
        {
            let id = op.operation_id.clone().unwrap_or_default();
            let mut new = id.clone();
            if seen.get(&id).is_some_and(|n| *n > 1) {
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
                new = format!("{tag}_{id}");
            }
            if shared.iter().filter(|s| **s == id).count() > 1 {
                new = format!("{new}_{method}");
            }
            op.operation_id = Some(new);
        }
    }
}

fn finish_operation(op: &mut Operation) {
    op.responses.responses.entry("default".into()).or_insert_with(|| error_response("Error"));
    if let Some(security) = &mut op.security {
        // `security(())` is one empty requirement ("anonymous"); written as no requirement at all.
        security.retain(|s| *s != Default::default());
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new().description(description).content("application/json", Content::new(Some(schema_ref("Error")))).build().into()
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// Every error: `{"error": "...", "code": "..."}`, plus `field` when one field or parameter was
/// wrong, and for a few codes extra fields, named where they are documented.
// `crate::error::Error::body` writes it.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// In words.
    error: String,
    /// Stable and machine-readable: `not_found`, `invalid_field`, `legal_hold`, ...
    code: String,
    /// The field or parameter that was wrong, by its path (`command.PIN`, `targets[0]`).
    #[schema(required = false)]
    field: String,
}

// The code of a `NeedsSupervisionError`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum NeedsSupervisionCode {
    NeedsSupervision,
}

// The field of a `NeedsSupervisionError`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum RequestTypeField {
    RequestType,
}

/// 422 `needs_supervision`: the command needs a supervised device and some targets are known not
/// to be supervised. Nothing was queued, for any target. Targets whose supervision is not
/// reported yet are not refused.
// `crate::services::supervision` writes it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NeedsSupervisionError {
    #[serde(flatten)]
    error: ErrorBody,
    #[schema(inline, required = false)]
    code: NeedsSupervisionCode,
    #[schema(inline, required = false)]
    field: RequestTypeField,
    request_type: String,
    /// what needs it: the request type, or a Settings item (`Settings item DeviceName`)
    needs_supervision: Vec<String>,
    /// UDIDs of the targets that are not supervised
    devices: Vec<String>,
}

/// 422 `no_unlock_token`: ClearPasscode to devices that have given Lanyard no unlock token.
// `crate::services::commands` writes it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NoUnlockTokenError {
    #[serde(flatten)]
    error: ErrorBody,
    /// the devices without an unlock token (up to 100)
    #[schema(required = false)]
    udids: Vec<String>,
    /// how many devices have none
    #[schema(required = false)]
    count: u64,
}

/// `#/components/responses/Unprocessable`: the 422 of every endpoint that reads a body or a
/// parameter.
pub struct Unprocessable;

impl<'r> ToResponse<'r> for Unprocessable {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "Unprocessable",
            error_response(
                "A field or parameter is wrong, named by its path in `field`: a wrong type, an unknown value, a missing or unknown field, a key repeated in a JSON object (at any depth), or a `limit` outside 1-1000",
            ),
        )
    }
}

/// `#/components/responses/CommandUnprocessable`: the 422 of the endpoints that queue commands.
pub struct CommandUnprocessable;

impl<'r> ToResponse<'r> for CommandUnprocessable {
    fn response() -> (&'r str, RefOr<Response>) {
        let schema =
            OneOfBuilder::new().item(schema_ref("Error")).item(schema_ref("NeedsSupervisionError")).item(schema_ref("NoUnlockTokenError"));
        let response = ResponseBuilder::new()
            .description(
                "A field is wrong (`invalid_field`, named by its path in `field`, as everywhere), or the command needs a supervised device and a target is known not to be supervised (`needs_supervision`, naming the devices in `devices`; nothing is queued), or ClearPasscode to a device that has given Lanyard no unlock token (`no_unlock_token`, with `udids` (up to 100) and `count`; only supervised devices give one, at enrolment; nothing is queued). The legal hold (409) is checked first.",
            )
            .content("application/json", Content::new(Some(Schema::OneOf(schema.build()))))
            .build();
        ("CommandUnprocessable", response.into())
    }
}

hand_schema!(
    /// Bytes: a file as it is (`format: binary`).
    Binary => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(utoipa::openapi::schema::KnownFormat::Binary)))
        .build()
);

/// The body of a command request: `request_type` (one of `Command::REQUEST_TYPES`) and Apple's
/// fields, read by `crate::protocol::command::Command::from_json`.
pub struct CommandRequest;

impl PartialSchema for CommandRequest {
    fn schema() -> RefOr<Schema> {
        let unlock = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::schema::SchemaFormat::Custom("byte".into())))
            .deprecated(Some(utoipa::openapi::Deprecated::True))
            .description(Some("ClearPasscode: ignored (accepted for older clients). Lanyard uses the device's own unlock token."));
        ObjectBuilder::new()
            .description(Some("The command's own keys with Apple's names (Message, PhoneNumber, PIN, Queries, Identifier, Payload as base64, ...). ClearPasscode takes none: Lanyard fills in the UnlockToken each device sent at TokenUpdate (kept sealed), only in the plist that device is handed; it never appears in responses, the audit log or the command's `fields`. An `UnlockToken` sent by an older client is accepted (it must be base64) and ignored."))
            .property("request_type", string_enum(crate::protocol::command::Command::REQUEST_TYPES, None))
            .required("request_type")
            .property(
                "expires_at",
                ObjectBuilder::new().schema_type(Type::String).format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                    utoipa::openapi::schema::KnownFormat::DateTime,
                ))),
            )
            .property("push", ObjectBuilder::new().schema_type(Type::Boolean).description(Some("push the targets (default true)")))
            .property("UnlockToken", unlock)
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for CommandRequest {}

// ---- the device face and /metrics: their handlers are not in this module's care ----
//
// These operations are declared here, on functions that only carry the documentation; the
// routes are registered in `super::routes` with `.route(...)`. The route-coverage test checks
// both lists agree.

#[utoipa::path(
    get,
    path = "/mdm/enroll",
    tag = "device",
    summary = "The signed enrolment profile",
    description = "403 for an unknown, expired or used-up token; 503 until a push certificate is loaded.",
    params(("token" = Option<String>, Query, description = "an enrolment token")),
    responses((status = 200, description = "OK", content_type = "application/x-apple-aspen-config", body = Binary)),
    security(())
)]
#[allow(dead_code)]
fn device_enroll() {}

#[utoipa::path(
    method(get, post),
    path = "/mdm/ade/enroll",
    tag = "device",
    summary = "ADE enrolment: the signed enrolment profile for a device in Setup Assistant",
    description = "The URL of Lanyard's ADE profiles. POST body: the device's MachineInfo as CMS SignedData \
        (application/pkcs7-signature), signed by its Apple identity; or GET with it base64 in `x-apple-aspen-deviceinfo`. \
        400 for a body that is not a signed MachineInfo; 403 for a signature that does not chain to Apple's root \
        (`ade_device_ca_file`), a serial number Apple School Manager does not list for this school, or a MachineInfo \
        sent before; 503 until Apple's root and a push certificate are configured. The profile's SCEP challenge is a \
        one-time token bound to the device's serial number. Body limit 64 KiB.",
    request_body(content = Binary, content_type = "application/pkcs7-signature", description = "CMS-signed MachineInfo plist"),
    params(("x-apple-aspen-deviceinfo" = Option<String>, Header, description = "base64 of the CMS-signed MachineInfo (GET)")),
    responses((status = 200, description = "OK", content_type = "application/x-apple-aspen-config", body = Binary)),
    security(())
)]
#[allow(dead_code)]
fn device_ade_enroll() {}

#[utoipa::path(
    method(put, post),
    path = "/mdm/checkin",
    tag = "device",
    summary = "Check-in: Authenticate, TokenUpdate, CheckOut, SetBootstrapToken, GetBootstrapToken",
    description = "Device face (Apple's protocol): authenticated by Mdm-Signature, never 401. Body limit 64 KiB.",
    responses((status = 200, description = "OK")),
    security(())
)]
#[allow(dead_code)]
fn device_checkin() {}

#[utoipa::path(
    method(put, post),
    path = "/mdm/connect",
    tag = "device",
    summary = "Command report; answers the next command or an empty 200",
    description = "Device face (Apple's protocol): authenticated by Mdm-Signature, never 401. Body limit 4 MiB.",
    responses((status = 200, description = "OK")),
    security(())
)]
#[allow(dead_code)]
fn device_connect() {}

#[utoipa::path(
    get,
    path = "/scep",
    tag = "device",
    summary = "SCEP (RFC 8894): GetCACaps, GetCACert, PKIOperation",
    params(
        ("operation" = Option<String>, Query, description = "GetCACaps, GetCACert or PKIOperation"),
        ("message" = Option<String>, Query, description = "base64 pkiMessage (PKIOperation by GET)")
    ),
    responses((status = 200, description = "OK")),
    security(())
)]
#[allow(dead_code)]
fn device_scep_get() {}

#[utoipa::path(
    post,
    path = "/scep",
    tag = "device",
    summary = "SCEP PKIOperation (DER pkiMessage body)",
    params(("operation" = Option<String>, Query, description = "PKIOperation")),
    responses((status = 200, description = "OK")),
    security(())
)]
#[allow(dead_code)]
fn device_scep_post() {}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses((status = 200, description = "OK", content_type = "application/openmetrics-text", body = String)),
    security(())
)]
#[allow(dead_code)]
fn meta_metrics() {}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::error::Error;

    /// The `Error` schema has every field the errors write (their extras aside).
    #[test]
    fn the_error_schema_is_the_error_body() {
        let schema = serde_json::to_value(ErrorBody::schema()).unwrap();
        let documented: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        let errors = [
            Error::BadRequest("x".into()),
            Error::Unauthorized("x".into()),
            Error::Forbidden("x".into()),
            Error::NotFound("x".into()),
            Error::conflict("legal_hold", "x"),
            Error::PayloadTooLarge { limit: 1 },
            Error::UnsupportedMediaType("x".into()),
            Error::unprocessable("limit", "x"),
            Error::Invalid { code: "invalid_csv", field: "kind".into(), message: "x".into(), extra: Default::default() },
            Error::TooManyRequests { message: "x".into(), retry_after_secs: 1 },
            Error::Unavailable("x".into()),
            Error::internal(anyhow::anyhow!("x")),
        ];
        for e in errors {
            let Value::Object(body) = e.body() else { panic!("{e:?}") };
            for key in body.keys() {
                assert!(documented.contains(&key), "{e:?} writes {key:?}, which the Error schema does not name");
            }
            for required in schema["required"].as_array().unwrap() {
                assert!(body.contains_key(required.as_str().unwrap()), "{e:?} lacks {required}");
            }
        }
    }

    /// Each operation has its own id, and the document is OpenAPI 3.1 with every `$ref` resolved.
    #[test]
    fn operation_ids_are_unique_and_refs_resolve() {
        let doc = serde_json::to_value(crate::faces::api::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "operationId {id} twice");
            }
        }
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let path: Vec<&str> = r.trim_start_matches("#/").split('/').collect();
            let target = path.iter().fold(&doc, |v, p| &v[*p]);
            assert!(target.is_object(), "{r} does not resolve");
        }
    }
}
