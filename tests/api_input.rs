//! Input handling at the API's edge, end to end on SQLite and PostgreSQL: search text is matched
//! literally (D10), `?limit=` is 1–1000 on every list (D11), a key repeated in a JSON object is
//! refused at any depth (D12), and a wrong type is 422 naming the field, never 400 (D13). A
//! property test feeds `parse_json` arbitrary bytes and documents with repeated keys.

#[macro_use]
mod common;

use common::{Backend, TestServer};
use lanyard_bench::sim::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    search_text_is_matched_literally,
    limits_outside_1_to_1000_are_refused,
    repeated_keys_are_refused,
    wrong_types_name_the_field,
);

/// Send `body` as it is, as JSON: (status, JSON answer).
async fn raw(s: &TestServer, method: Method, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
    let resp = s
        .client
        .request(method, s.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A 422 naming `field`.
#[track_caller]
fn assert_field(got: (StatusCode, Value), field: &str) {
    let (st, body) = got;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "expected 422 naming {field}: {body}");
    assert_eq!(body["field"], field, "{body}");
    assert_eq!(body["code"], "invalid_field", "{body}");
}

/// A device row as inventory would leave it, written behind the server's back.
async fn add_device(s: &TestServer, udid: &str, name: &str) {
    let name = name.replace('\'', "''");
    s.raw_sql(&[&format!(
        "INSERT INTO devices (udid, device_name, platform, enrolled, first_seen_at, last_seen_at, authenticated_at) \
         VALUES ('{udid}', '{name}', 'iOS', TRUE, '2026-01-05T09:00:00+00:00', '2026-01-05T09:00:00+00:00', '2026-01-05T09:00:00+00:00')"
    )])
    .await;
}

fn udids(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["items"].as_array().unwrap().iter().map(|d| d["udid"].as_str().unwrap().to_owned()).collect();
    v.sort();
    v
}

fn names(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["items"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_owned()).collect();
    v.sort();
    v
}

/// D10: `%`, `_` and `\` in a search are characters to find, not wildcards.
async fn search_text_is_matched_literally(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    add_device(&s, "INPUT-A", "50% charged").await;
    add_device(&s, "INPUT-B", "500 charged").await;
    add_device(&s, "INPUT-C", "Art_Room iPad").await;
    add_device(&s, "INPUT-D", "ArtXRoom iPad").await;
    add_device(&s, "INPUT-E", "C:\\Lab").await;
    let search = |q: &'static str| {
        let s = &s;
        let admin = &admin;
        async move {
            let (st, page) = s.get(&format!("/api/v1/devices?q={q}"), admin).await;
            assert_eq!(st, StatusCode::OK, "{page}");
            udids(&page)
        }
    };
    assert_eq!(search("%25").await, ["INPUT-A"], "q=% is the character, not every device");
    assert_eq!(search("_").await, ["INPUT-C"], "q=_ is the character, not every device");
    assert_eq!(search("50%25").await, ["INPUT-A"], "50% finds \"50% charged\" and not \"500 charged\"");
    assert_eq!(search("art_room").await, ["INPUT-C"], "case-insensitive, and _ is literal");
    assert_eq!(search("%5C").await, ["INPUT-E"], "a backslash is a character too");
    assert_eq!(search("c%3A%5Cl").await, ["INPUT-E"]);
    assert_eq!(search("CHARGED").await, ["INPUT-A", "INPUT-B"], "still any case");
    assert_eq!(search("%25%25").await, Vec::<String>::new());

    // People: the same rules.
    for name in ["Ann_Lee", "AnnXLee", "Bob 50%", "Bob 500", "Cy\\Dee"] {
        let (st, body) = s.post("/api/v1/people", &admin, json!({"kind": "staff", "name": name})).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    let people = |q: &'static str| {
        let s = &s;
        let admin = &admin;
        async move {
            let (st, page) = s.get(&format!("/api/v1/people?q={q}"), admin).await;
            assert_eq!(st, StatusCode::OK, "{page}");
            names(&page)
        }
    };
    assert_eq!(people("_").await, ["Ann_Lee"]);
    assert_eq!(people("ann_lee").await, ["Ann_Lee"]);
    assert_eq!(people("50%25").await, ["Bob 50%"]);
    assert_eq!(people("%25").await, ["Bob 50%"]);
    assert_eq!(people("%5C").await, ["Cy\\Dee"]);

    // The audit log's action prefix (`auth.`) is literal too.
    let count = |q: &'static str| {
        let s = &s;
        let admin = &admin;
        async move {
            let (st, page) = s.get(&format!("/api/v1/audit?action={q}&limit=1000"), admin).await;
            assert_eq!(st, StatusCode::OK, "{page}");
            page["items"].as_array().unwrap().len()
        }
    };
    assert!(count("auth.").await >= 1, "the admin's login");
    assert_eq!(count("a_th.").await, 0, "_ is not a wildcard in an action prefix");
    assert_eq!(count("%25.").await, 0, "% is not a wildcard in an action prefix");
    s.stop().await;
}

/// D11: every list that takes `?limit=` takes 1 to 1000 and refuses anything else, naming it.
async fn limits_outside_1_to_1000_are_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    add_device(&s, "INPUT-LIMIT", "Limit iPad").await;
    let lists = [
        "/api/v1/devices",
        "/api/v1/devices.csv",
        "/api/v1/devices/INPUT-LIMIT/commands",
        "/api/v1/people",
        "/api/v1/audit",
        "/api/v1/operators",
        "/api/v1/filtering/changes",
        "/api/v1/filtering/changes?format=csv",
    ];
    for list in lists {
        let sep = if list.contains('?') { '&' } else { '?' };
        for bad in ["0", "-1", "1001", "99999999999", "ten", ""] {
            let (st, body) = s.get(&format!("{list}{sep}limit={bad}"), &admin).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{list} limit={bad}: {body}");
            assert_eq!(body["field"], "limit", "{list} limit={bad}: {body}");
        }
        for good in ["1", "1000"] {
            let (st, body) = s.get(&format!("{list}{sep}limit={good}"), &admin).await;
            assert_eq!(st, StatusCode::OK, "{list} limit={good}: {body}");
        }
        let (st, body) = s.get(list, &admin).await;
        assert_eq!(st, StatusCode::OK, "{list} without a limit: {body}");
    }
    // A page of 1 is one item, with a cursor to the next.
    let (_, page) = s.get("/api/v1/audit?limit=1", &admin).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string(), "{page}");
    // The OpenAPI document says so.
    let (_, doc) = s.get("/api/v1/openapi.json", &admin).await;
    let people = &doc["paths"]["/api/v1/people"]["get"];
    let limit = people["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!((limit["schema"]["minimum"].as_i64(), limit["schema"]["maximum"].as_i64()), (Some(1), Some(1000)), "{limit}");
    assert!(people["responses"]["422"].is_object(), "{people}");
    s.stop().await;
}

/// D12: a key repeated in any object, at any depth, is 422 naming it, on every JSON body; and
/// nothing is done.
async fn repeated_keys_are_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let cmds = format!("/api/v1/devices/{}/commands", d.udid);
    let (_, before) = s.get(&cmds, &admin).await;
    let queued = before["items"].as_array().unwrap().len();

    // The last value would win: an inventory request that erases the iPad.
    let got = raw(&s, Method::POST, &cmds, &admin, r#"{"request_type":"ProfileList","request_type":"EraseDevice"}"#).await;
    assert_field(got.clone(), "request_type");
    assert!(got.1["error"].as_str().unwrap().contains("duplicate"), "{}", got.1);
    // The same key spelled with an escape is the same key.
    assert_field(
        raw(&s, Method::POST, &cmds, &admin, r#"{"request_type":"ProfileList","request\u005ftype":"EraseDevice"}"#).await,
        "request_type",
    );
    // Apple's fields, nested.
    let body = r#"{"request_type":"Settings","Settings":[{"Item":"DeviceName","DeviceName":"a","DeviceName":"b"}]}"#;
    assert_field(raw(&s, Method::POST, &cmds, &admin, body).await, "Settings[0].DeviceName");
    let bulk = format!(r#"{{"targets":["{}"],"command":{{"request_type":"DeviceLock","PIN":"123456","PIN":"000000"}}}}"#, d.udid);
    assert_field(raw(&s, Method::POST, "/api/v1/commands", &admin, &bulk).await, "command.PIN");
    let bulk = format!(r#"{{"targets":["{}"],"targets":[],"command":{{"request_type":"DeviceInformation"}}}}"#, d.udid);
    assert_field(raw(&s, Method::POST, "/api/v1/commands", &admin, &bulk).await, "targets");
    let (_, after) = s.get(&cmds, &admin).await;
    assert_eq!(after["items"].as_array().unwrap().len(), queued, "nothing was queued: {after}");

    // Typed bodies, bodies read as free JSON, and bodies read by hand.
    let cases: &[(Method, &str, &str, &str)] = &[
        (Method::POST, "/api/v1/people", r#"{"kind":"staff","name":"A","name":"B"}"#, "name"),
        (Method::POST, "/api/v1/auth/login", r#"{"username":"admin","password":"x","password":"y"}"#, "password"),
        (Method::POST, "/api/v1/groups", r#"{"name":"g","kind":"smart","rules":{"platform":"iOS","platform":"macOS"}}"#, "rules.platform"),
        (
            Method::PUT,
            "/api/v1/timetable",
            r#"{"timezone":"Europe/London","periods":[{"name":"P1","weekday":"monday","start":"09:00","end":"10:00","start":"11:00"}],"terms":[]}"#,
            "periods[0].start",
        ),
        (Method::POST, "/api/v1/profiles", r#"{"name":"a","mobileconfig_base64":"AA==","name":"b"}"#, "name"),
        (Method::POST, "/api/v1/assignments/00000000-0000-0000-0000-000000000000/end", r#"{"at":null,"at":null}"#, "at"),
        (Method::DELETE, "/api/v1/profiles/00000000-0000-0000-0000-000000000000", r#"{"reason":"a","reason":"b"}"#, "reason"),
        (Method::POST, "/api/v1/enrollment-tokens", r#"{"label":"x","label":"y"}"#, "label"),
        (
            Method::POST,
            "/api/v1/grants",
            r#"{"person_id":"00000000-0000-0000-0000-000000000000","reason":"r","x":{"a":[{},{"b":1,"b":2}]}}"#,
            "x.a[1].b",
        ),
        (Method::PUT, "/api/v1/timetable", r#"[[[{"k":1,"k":1}]]]"#, "[0][0][0].k"),
    ];
    for (method, path, body, field) in cases {
        let got = raw(&s, method.clone(), path, &admin, body).await;
        assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path} {body}: {}", got.1);
        assert_eq!(got.1["field"], *field, "{method} {path} {body}: {}", got.1);
    }
    let (_, groups) = s.get("/api/v1/groups", &admin).await;
    assert_eq!(groups["items"].as_array().unwrap().len(), 0, "no group was made: {groups}");
    let (_, people) = s.get("/api/v1/people", &admin).await;
    assert_eq!(people["items"].as_array().unwrap().len(), 0, "no one was added: {people}");
    // Distinct keys in sibling objects are fine.
    let (st, body) =
        s.post("/api/v1/groups", &admin, json!({"name": "g", "kind": "smart", "rules": {"platform": ["iOS"], "model": "iPad*"}})).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    s.stop().await;
}

/// D13: syntax errors are 400; wrong types, unknown enum values and missing fields are 422
/// naming the field's path, on every endpoint.
async fn wrong_types_name_the_field(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let cmds = format!("/api/v1/devices/{}/commands", d.udid);
    let (st, person) = s.post("/api/v1/people", &admin, json!({"kind": "staff", "name": "Pat Jones"})).await;
    assert_eq!(st, StatusCode::CREATED, "{person}");
    let pid = person["id"].as_str().unwrap();
    let cases: Vec<(Method, String, String, &str)> = vec![
        // people
        (Method::POST, "/api/v1/people".into(), r#"{"kind":5,"name":"x"}"#.into(), "kind"),
        (Method::POST, "/api/v1/people".into(), r#"{"kind":"alien","name":"x"}"#.into(), "kind"),
        (Method::POST, "/api/v1/people".into(), r#"{"kind":null,"name":"x"}"#.into(), "kind"),
        (Method::POST, "/api/v1/people".into(), r#"{"kind":["staff"],"name":"x"}"#.into(), "kind"),
        (Method::POST, "/api/v1/people".into(), r#"{"name":"x"}"#.into(), "kind"),
        (Method::POST, "/api/v1/people".into(), r#"{"kind":"staff","name":7}"#.into(), "name"),
        (Method::POST, "/api/v1/people".into(), r#"{"kind":"staff","name":"x","start_date":"soon"}"#.into(), "start_date"),
        (Method::PATCH, format!("/api/v1/people/{pid}"), r#"{"kind":true}"#.into(), "kind"),
        (Method::GET, "/api/v1/people?kind=5".into(), String::new(), "kind"),
        // commands
        (Method::POST, cmds.clone(), r#"{"request_type":5}"#.into(), "request_type"),
        (Method::POST, cmds.clone(), r#"{"request_type":"DeviceInformation","push":"yes"}"#.into(), "push"),
        (Method::POST, "/api/v1/commands".into(), r#"{"targets":"x","command":{"request_type":"DeviceInformation"}}"#.into(), "targets"),
        (Method::POST, "/api/v1/commands".into(), r#"{"targets":[5],"command":{"request_type":"DeviceInformation"}}"#.into(), "targets[0]"),
        (Method::POST, "/api/v1/commands".into(), format!(r#"{{"targets":["{}"]}}"#, d.udid), "command"),
        (Method::POST, "/api/v1/commands".into(), format!(r#"{{"targets":["{}"],"command":[]}}"#, d.udid), "command"),
        // grants
        (Method::POST, "/api/v1/grants".into(), r#"{"person_id":5,"reason":"r"}"#.into(), "person_id"),
        (Method::POST, "/api/v1/grants".into(), r#"{"person_id":"not-a-uuid","reason":"r"}"#.into(), "person_id"),
        (Method::POST, "/api/v1/grants".into(), format!(r#"{{"person_id":"{pid}","reason":"r","from":"yesterday"}}"#), "from"),
        (Method::POST, "/api/v1/grants".into(), format!(r#"{{"person_id":"{pid}"}}"#), "reason"),
        (Method::POST, "/api/v1/grants".into(), format!(r#"{{"person_id":"{pid}","reason":{{}}}}"#), "reason"),
        // groups
        (Method::POST, "/api/v1/groups".into(), r#"{"name":"g","kind":7}"#.into(), "kind"),
        (Method::POST, "/api/v1/groups".into(), r#"{"name":"g","kind":"weird"}"#.into(), "kind"),
        (Method::POST, "/api/v1/groups".into(), r#"{"name":["g"],"kind":"static"}"#.into(), "name"),
        (Method::POST, "/api/v1/groups".into(), r#"{"name":"g","kind":"smart","rules":{"platform":5}}"#.into(), "rules.platform"),
        (Method::POST, "/api/v1/groups".into(), r#"{"name":"g","kind":"smart","rules":{"ownership":"mine"}}"#.into(), "rules.ownership"),
        // others
        (Method::POST, "/api/v1/operators".into(), r#"{"username":"u","password":"long-enough-pass","role":1}"#.into(), "role"),
        (Method::POST, "/api/v1/api-tokens".into(), r#"{"name":"n","role":"auditor","expires_at":12}"#.into(), "expires_at"),
        (Method::POST, "/api/v1/api-tokens".into(), r#""a string""#.into(), "body"),
        (Method::POST, format!("/api/v1/people/{pid}/leave"), r#"{"date":20260101}"#.into(), "date"),
    ];
    for (method, path, body, field) in &cases {
        let got = if method == Method::GET { s.get(path, &admin).await } else { raw(&s, method.clone(), path, &admin, body).await };
        assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path} {body}: {}", got.1);
        assert_eq!(got.1["field"], *field, "{method} {path} {body}: {}", got.1);
        assert_eq!(got.1["code"], "invalid_field", "{method} {path} {body}: {}", got.1);
    }
    // What is not JSON stays 400, including anything after the document.
    for body in [
        r#"{"kind":"#,
        r#"{"kind":"staff","name":"x"} trailing"#,
        r#"{"kind":"staff","name":"x"}{}"#,
        "",
        "\u{feff}{}",
        "{'kind':'staff'}",
        r#"{"a":1,}"#,
    ] {
        let (st, b) = raw(&s, Method::POST, "/api/v1/people", &admin, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body:?}: {b}");
        assert_eq!(b["code"], "bad_request", "{b}");
    }
    let deep = "[".repeat(100_000);
    let (st, b) = raw(&s, Method::PUT, "/api/v1/timetable", &admin, &deep).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (_, people) = s.get("/api/v1/people", &admin).await;
    assert_eq!(people["items"].as_array().unwrap().len(), 1, "only Pat: {people}");
    let (_, hist) = s.get(&cmds, &admin).await;
    assert!(hist["items"].as_array().unwrap().iter().all(|c| c["created_by"] != "operator:admin"), "nothing queued: {hist}");
    s.stop().await;
}

/// `parse_json` on anything: never a panic; 400 exactly when serde_json finds no JSON document;
/// a repeated key always 422 naming its path, whatever type the body is read as.
mod parse_json_properties {
    use lanyard::error::Error;
    use lanyard::faces::api::devices::BulkCommand;
    use lanyard::faces::api::extract::parse_json;
    use lanyard::services::register::grants::NewGrant;
    use lanyard::services::register::people::{PersonFields, PersonPatch};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// The body read as several of the API's request types.
    fn outcomes(bytes: &[u8]) -> Vec<Result<(), Error>> {
        vec![
            parse_json::<Value>(bytes).map(drop),
            parse_json::<Map<String, Value>>(bytes).map(drop),
            parse_json::<PersonFields>(bytes).map(drop),
            parse_json::<PersonPatch>(bytes).map(drop),
            parse_json::<NewGrant>(bytes).map(drop),
            parse_json::<BulkCommand>(bytes).map(drop),
        ]
    }

    fn consistent_with_serde_json(bytes: &[u8]) {
        let reference = serde_json::from_slice::<Value>(bytes);
        for outcome in outcomes(bytes) {
            match (&reference, outcome) {
                (Err(_), Err(Error::BadRequest(_))) => {}
                (Err(e), other) => panic!("serde_json refuses it ({e}) but parse_json said {other:?}"),
                (Ok(_), Ok(())) => {}
                // A repeated key, or a document that is not this request type.
                (Ok(_), Err(Error::Unprocessable { message, .. })) => assert!(!message.is_empty()),
                (Ok(_), Err(other)) => panic!("valid JSON answered {other:?}"),
            }
        }
    }

    /// One step from the document's root to the object with the repeated key.
    #[derive(Debug, Clone)]
    enum Wrap {
        /// `{"<key>": inner, ...siblings}`
        Object(String, usize),
        /// `[fillers..., inner, ...]`, inner at this index.
        Array(usize),
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{1,8}",
            Just("request_type".to_owned()),
            Just("kind".to_owned()),
            Just("name".to_owned()),
            Just("targets".to_owned()),
            "\\PC{0,6}",
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "\\PC{0,10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A key as JSON text: plainly, or every character as `\uXXXX`.
    fn spell(key: &str, escaped: bool) -> String {
        if !escaped {
            return serde_json::to_string(key).unwrap();
        }
        let mut out = String::from("\"");
        for unit in key.encode_utf16() {
            out.push_str(&format!("\\u{unit:04x}"));
        }
        out.push('"');
        out
    }

    fn path_of(wraps: &[Wrap], key: &str) -> String {
        let mut out = String::new();
        let mut separator = "";
        for w in wraps {
            match w {
                Wrap::Object(k, _) => out.push_str(&format!("{separator}{k}")),
                Wrap::Array(i) => out.push_str(&format!("[{i}]")),
            }
            separator = ".";
        }
        out.push_str(separator);
        out.push_str(key);
        out
    }

    fn wrap() -> impl Strategy<Value = Wrap> {
        prop_oneof![("[a-z]{1,6}", 0usize..3).prop_map(|(k, n)| Wrap::Object(k, n)), (0usize..3).prop_map(Wrap::Array)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            consistent_with_serde_json(&bytes);
        }

        #[test]
        fn json_ish_text_never_panics(text in "[\\[\\]{}\",:0-9a-z\\\\. ]{0,64}") {
            consistent_with_serde_json(text.as_bytes());
        }

        #[test]
        fn valid_documents_are_read_as_serde_json_reads_them(v in leaf()) {
            let text = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(parse_json::<Value>(&text).unwrap(), serde_json::from_slice::<Value>(&text).unwrap());
            consistent_with_serde_json(&text);
        }

        #[test]
        fn repeated_keys_are_always_refused(
            dup in key(),
            first in leaf(),
            second in leaf(),
            others in prop::collection::btree_map("[a-z]{1,5}", leaf(), 0..4),
            split in 0usize..5,
            escaped in any::<bool>(),
            wraps in prop::collection::vec(wrap(), 0..4),
        ) {
            // The object with the key twice, other keys before, between and after.
            let others: Vec<(String, Value)> = others.into_iter().filter(|(k, _)| *k != dup).collect();
            let at = split.min(others.len());
            let mut entries: Vec<String> = others.iter().map(|(k, v)| format!("{}:{}", spell(k, false), v)).collect();
            entries.insert(at, format!("{}:{}", spell(&dup, escaped), second));
            entries.insert(at.min(1), format!("{}:{}", spell(&dup, false), first));
            let mut doc = format!("{{{}}}", entries.join(","));
            for w in wraps.iter().rev() {
                doc = match w {
                    Wrap::Object(k, siblings) => {
                        let mut parts = vec![format!("{}:{doc}", spell(k, false))];
                        for i in 0..*siblings {
                            let s = format!("{k}~{i}");
                            parts.push(format!("{}:{i}", spell(&s, false)));
                        }
                        format!("{{{}}}", parts.join(","))
                    }
                    Wrap::Array(index) => {
                        let mut parts: Vec<String> = (0..*index).map(|i| i.to_string()).collect();
                        parts.push(doc);
                        parts.push("null".into());
                        format!("[{}]", parts.join(","))
                    }
                };
            }
            let expected = path_of(&wraps, &dup);
            for outcome in outcomes(doc.as_bytes()) {
                match outcome {
                    Err(Error::Unprocessable { field, message }) => {
                        prop_assert_eq!(&field, &expected, "{}", doc);
                        prop_assert!(message.contains("duplicate"), "{}", message);
                    }
                    other => prop_assert!(false, "{doc}: expected the repeated key refused, got {other:?}"),
                }
            }
        }
    }
}
