//! `lanyard bench` end to end, small and quick, so that the benchmark cannot silently rot. It
//! checks that every run completes and reports sane values, never how fast they are (debug
//! build, shared machine).

#[allow(unused_macros)]
mod common;

use std::path::PathBuf;

use common::Backend;
use lanyard_bench::bench::{BenchArgs, DeviceKey, Report, Scenario};

fn args(database_url: Option<String>) -> BenchArgs {
    BenchArgs {
        scenario: Scenario::All,
        devices: 20,
        enrolled: Some(60),
        concurrency: 4,
        duration: 1.0,
        rate: vec![200.0],
        command_rate: vec![100.0],
        database_url,
        server_log: None,
        keep: false,
        server_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_lanyard"))),
        device_key: DeviceKey::Rsa2048,
    }
}

fn check(r: &Report) {
    let shown = r.to_string();
    assert_eq!(r.errors(), 0, "{shown}");
    assert_eq!((r.devices, r.enrolled, r.concurrency), (20, 60, 4));
    let names: Vec<(&str, Option<f64>)> = r.phases.iter().map(|p| (p.name, p.offered_rate)).collect();
    assert_eq!(names, [("idle", None), ("idle", Some(200.0)), ("commands", None), ("commands", Some(100.0))], "{shown}");
    for p in &r.phases {
        assert!(p.requests > 0, "{shown}");
        assert!(p.requests_per_sec > 0.0, "{shown}");
        assert!(p.p50_ms > 0.0 && p.p50_ms <= p.p99_ms && p.p99_ms <= p.max_ms, "{shown}");
        assert!(p.server_rss_max_kb > 0, "{shown}");
        assert!(p.server_cpu_cores > 0.0, "{shown}");
        if p.name == "commands" {
            let c = p.commands.as_ref().expect("command stats");
            assert_eq!(c.completed, 20, "{shown}");
            assert_eq!(c.verified_acknowledged, 20, "{shown}");
            assert_eq!(p.requests, 40, "{shown}");
            assert!(c.round_trip_p50_ms <= c.round_trip_p99_ms, "{shown}");
        } else {
            assert!(p.commands.is_none());
        }
    }
    // The open-loop Idle run sends what it is offered (200/s for a second) unless it falls
    // behind, which would show as unsent requests, not as errors.
    let paced = &r.phases[1];
    assert_eq!(paced.requests + paced.unsent, 200, "{shown}");
    assert!(r.server_peak_rss_kb >= r.phases[0].server_rss_max_kb, "{shown}");
    assert!(shown.contains("idle (max):") && shown.contains("server peak RSS"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_end_to_end_on_sqlite() {
    let r = lanyard_bench::bench::run(args(None)).await.unwrap();
    assert_eq!(r.backend, "sqlite");
    check(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_end_to_end_on_postgres() {
    let Some(Backend::Postgres(url)) = Backend::postgres().await else {
        return;
    };
    let r = lanyard_bench::bench::run(args(Some(url.clone()))).await.unwrap();
    assert_eq!(r.backend, "postgres");
    check(&r);
    // A second run on the same database is refused: its figures would not be comparable.
    let e = lanyard_bench::bench::run(args(Some(url))).await.unwrap_err();
    assert!(e.to_string().contains("empty database"), "{e}");
}

/// Issue 4's benchmark through the server: every enrolled device pushed by `POST /api/v1/push`
/// (the server's own APNs client, the mock APNs in the bench process) while devices check in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_through_the_server_reaches_every_device_while_check_ins_go_on() {
    let mut a = args(None);
    a.scenario = Scenario::PushServer;
    a.enrolled = Some(21_000);
    a.rate = vec![100.0];
    let r = lanyard_bench::bench::run(a).await.unwrap();
    let shown = r.to_string();
    assert_eq!(r.errors(), 0, "{shown}");
    assert_eq!(r.phases.len(), 1, "{shown}");
    let p = &r.phases[0];
    let s = p.pushes.as_ref().expect("push stats");
    // 21,000 devices: two API requests (at most 20,000 each), all answered by the mock.
    assert_eq!((s.targets, s.requests, s.delivered, s.failed, s.skipped), (21_000, 2, 21_000, 0, 0), "{shown}");
    assert_eq!(s.received, 21_000, "{shown}");
    assert!(s.secs_to_last_push > 0.0 && s.secs_to_last_push <= s.secs_to_last_answer, "{shown}");
    // The devices were answered all along: Idle check-ins went on during the pushes.
    assert_eq!(p.name, "idle while pushing", "{shown}");
    assert!(p.requests > 0 && p.p50_ms <= p.p99_ms, "{shown}");
    assert!(shown.contains("21000 devices in 2 requests at once"), "{shown}");
}

/// Issue 16's enrolment benchmark: every device enrols as an iPad does (SCEP PKCSReq with the
/// enrolment token as challenge, Authenticate, TokenUpdate), the store holds them all, and the
/// report says where the time went on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_bench_enrols_every_device_by_scep_and_splits_the_cost() {
    let mut a = args(None);
    a.scenario = Scenario::Enrol;
    a.enrolled = None;
    let r = lanyard_bench::bench::run(a).await.unwrap();
    let shown = r.to_string();
    assert_eq!(r.errors(), 0, "{shown}");
    assert_eq!(r.phases.len(), 1, "{shown}");
    let p = &r.phases[0];
    assert_eq!((p.name, p.requests), ("enrol", 20), "{shown}");
    let e = p.enrolment.as_ref().expect("enrolment stats");
    assert_eq!((e.enrolled, e.verified_enrolled), (20, 20), "{shown}");
    assert!(p.server_cpu_us_per_request > 0.0, "{shown}");
    assert!(e.key_generation_ms > 0.0 && e.request_ms > 0.0 && e.cert_rep_ms > 0.0 && e.signing_ms > 0.0, "{shown}");
    assert!(shown.contains("server-side") && shown.contains("SCEP, Authenticate, TokenUpdate each"), "{shown}");
}
