//! `GET /mdm/enroll?<query>` against a real Lanyard (SQLite in a temporary directory) holding
//! one live enrolment token: any query is a 400 or 403, never a profile or a server error,
//! unless it carries the live token itself (then 503: no push certificate is loaded).
#![no_main]
use std::sync::{Arc, OnceLock};

use tower::ServiceExt as _;

struct Server {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    token: String,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let env: std::collections::BTreeMap<String, String> = [
            ("LANYARD_DATA_DIR", data.display().to_string()),
            ("LANYARD_DATABASE_URL", format!("sqlite://{}", data.join("lanyard.db").display())),
            ("LANYARD_HOSTNAME", "localhost".into()),
            ("LANYARD_TLS", "false".into()),
            ("LANYARD_ADMIN_PASSWORD", "correct-horse-battery-staple".into()),
            ("LANYARD_APNS_URL", "https://127.0.0.1:9".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let config = lanyard::config::Config::from_sources(None, &env).expect("config");
        let (ctx, token) = runtime.block_on(async {
            let p = lanyard::setup::prepare(config, "http://localhost:8443".into(), Arc::new(lanyard::clock::SystemClock))
                .await
                .expect("prepare");
            let t = p
                .ctx
                .enrollment
                .create_enrollment_token(&lanyard::services::auth::Actor::system(), "fuzz", None, None, None)
                .await
                .expect("token");
            (p.ctx, t.token)
        });
        Server { runtime, app: lanyard::faces::server::app(ctx), token, _dir: dir }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = server();
    let query = String::from_utf8_lossy(data);
    let Ok(req) = axum::http::Request::get(format!("/mdm/enroll?{query}")).body(axum::body::Body::empty()) else { return };
    let status = s.runtime.block_on(s.app.clone().oneshot(req)).expect("infallible").status().as_u16();
    // The live token itself, however the query spells it, is the one way past the check.
    let live = serde_urlencoded::from_str::<Vec<(String, String)>>(&query)
        .is_ok_and(|pairs| pairs.iter().any(|(k, v)| k == "token" && *v == s.token));
    assert!(matches!(status, 400 | 403) || (live && status == 503), "GET /mdm/enroll?{query}: {status}");
});
