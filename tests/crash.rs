//! Crash safety: the real `lanyard serve`, killed with SIGKILL under command load and started
//! again on the same data, loses nothing it confirmed (issue 16, "Crash safety in CI").
//!
//! Simulated devices (enrolled over HTTP: Authenticate, TokenUpdate) poll `/mdm/connect`, take
//! the commands an admin queues for them through `POST /api/v1/commands` (several rounds), and
//! answer each with a signed Acknowledged report. Meanwhile the server is killed with SIGKILL
//! [`KILLS`] times — after a random number of acknowledged results, some kills landing while a
//! command is being queued — once more while it is still starting, and restarted each time on
//! the same data directory and database. Each device records every command it was handed and
//! every result that got an HTTP 200. After the last restart the devices drain the queue. The test proves, on SQLite and PostgreSQL:
//!
//! - every result that got a 200 is stored (the command shows as acknowledged, with its result);
//! - no command whose result got a 200 is handed to the device again;
//! - nothing in the queue is lost: every command queued (a 201, or stored by a request the kill
//!   cut off) is delivered and acknowledged in the end, for every target;
//! - every operator command stored has its `command.enqueue` audit entry (they commit together);
//! - the server starts cleanly every time (ready within [`READY_TIMEOUT`], no refusal of its own
//!   data) and answers every device request it takes with a 200 (no 5xx, no refusal);
//! - the audit chain verifies: `GET /api/v1/audit/verify` while the load runs (the head moving
//!   under the walk), and `lanyard audit verify` on the killed server's data after every kill.
//!
//! The seed of the kill timing is printed; `LANYARD_CRASH_SEED=N` replays it. The checks hold
//! for every timing, so the seed only changes where the kills land, never the verdict.
//!
//! The PostgreSQL run is fine with a server started `fsync=off` (as `.ci/run` and the test
//! instructions start it): SIGKILL ends the Lanyard process, not the machine, so what
//! PostgreSQL (or SQLite, in WAL mode with `synchronous = NORMAL`) handed to the operating system
//! survives either way; the test is about what Lanyard commits before it answers, not about
//! the disk's flushes.
//!
//! Run: `cargo test --test crash` (PostgreSQL too with `LANYARD_TEST_POSTGRES_URL`).

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::{ServerChild, free_addr, lanyard_env};
use common::device::TOPIC;
use common::{ADMIN_PASSWORD, Backend};
use lanyard_bench::sim::{Kind, SimDevice, SimIdentity, new_key};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(sigkill_under_command_load);

/// Simulated devices.
const DEVICES: usize = 32;
/// SIGKILLs while the load runs (plus one of a server still starting, and one at the very end,
/// before the last `audit verify`).
const KILLS: usize = 8;
/// How long a start may take to answer `/readyz` (a debug build starts in well under a second).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the load may take to reach a kill point, and the queue to drain at the end.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// The commands queued, a round at a time, for every device.
const ROUND_TYPES: [&str; 4] = ["DeviceInformation", "SecurityInfo", "CertificateList", "InstalledApplicationList"];
/// A device with nothing to do polls again after this (plus a little jitter).
const IDLE_PAUSE_MS: u64 = 60;
/// After a failed request (the server is down) a device tries again after this.
const RETRY_PAUSE_MS: u64 = 25;

/// SplitMix64: small, seedable, good enough to scatter kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the devices and the controller share while the load runs.
struct Load {
    base: String,
    client: reqwest::Client,
    stop: AtomicBool,
    /// Moved on at each kill and after the last round is queued: a device's empty Idle counts
    /// towards the drain only if it was sent after the last move.
    epoch: AtomicU64,
    /// Results that got a 200, all devices together.
    acked: AtomicUsize,
    /// Per device: 1 + the epoch at which it last sent an Idle that was answered empty.
    drained: Vec<AtomicU64>,
    /// Requests that failed (connection refused or cut by a kill): expected, counted.
    failed: AtomicUsize,
    /// Broken promises, reported at the end.
    violations: Mutex<Vec<String>>,
}

impl Load {
    fn violation(&self, v: String) {
        eprintln!("VIOLATION: {v}");
        self.violations.lock().unwrap().push(v);
    }
}

/// What one device saw.
#[derive(Default)]
struct DeviceLog {
    udid: String,
    /// Every command UUID handed to the device, in order (a command may come again if its
    /// result never got a 200).
    received: Vec<String>,
    /// The status reported for each command whose result got a 200.
    acked: HashMap<String, String>,
}

async fn device_request(load: &Load, sim: &SimDevice, path: &str, body: Vec<u8>) -> Result<(StatusCode, Vec<u8>), String> {
    let sig = sim.sign(&body);
    let resp = load
        .client
        .put(format!("{}{path}", load.base))
        .header("content-type", "application/x-apple-aspen-mdm-checkin")
        .header("Mdm-Signature", sig)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("{e}"))?;
    Ok((status, bytes.to_vec()))
}

/// `Status` of a report plist this test made.
fn report_status(report: &[u8]) -> String {
    let v: plist::Value = plist::from_bytes(report).expect("our own report");
    let status = v.as_dictionary().and_then(|d| d.get("Status")).and_then(|s| s.as_string()).expect("a Status");
    match status {
        "Acknowledged" => "acknowledged".into(),
        "NotNow" => "not_now".into(),
        _ => "error".into(),
    }
}

/// One device: Idle, answer whatever comes, until told to stop.
async fn play(i: usize, sim: Arc<SimDevice>, load: Arc<Load>) -> DeviceLog {
    let mut log = DeviceLog { udid: sim.udid.clone(), ..Default::default() };
    let mut jitter = Rng(i as u64 + 1);
    while !load.stop.load(Ordering::SeqCst) {
        let epoch = load.epoch.load(Ordering::SeqCst);
        // The report in flight: (command UUID, its status), None for the Idle.
        let mut answering: Option<(String, String)> = None;
        let mut body = sim.idle();
        loop {
            let (status, next) = match device_request(&load, &sim, "/mdm/connect", body).await {
                Ok(r) => r,
                Err(_) => {
                    load.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
                    break;
                }
            };
            if status != StatusCode::OK {
                // An enrolled device's signed report deserves a 200, whatever the server went
                // through: anything else (a 5xx, or a 4xx refusing the device) is a defect.
                load.violation(format!("{}: /mdm/connect answered {status}: {}", sim.udid, String::from_utf8_lossy(&next)));
                load.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
                break;
            }
            match answering.take() {
                Some((uuid, st)) => {
                    log.acked.insert(uuid, st);
                    load.acked.fetch_add(1, Ordering::SeqCst);
                }
                None => {
                    if next.is_empty() {
                        load.drained[i].fetch_max(epoch + 1, Ordering::SeqCst);
                    }
                }
            }
            if next.is_empty() {
                tokio::time::sleep(Duration::from_millis(IDLE_PAUSE_MS + jitter.below(20))).await;
                break;
            }
            let Some((uuid, request_type, report)) = sim.answer(&next) else {
                load.violation(format!("{}: not a command: {}", sim.udid, String::from_utf8_lossy(&next)));
                break;
            };
            if log.acked.contains_key(&uuid) {
                load.violation(format!("{}: {request_type} {uuid} handed over again after its result got a 200", sim.udid));
            }
            log.received.push(uuid.clone());
            answering = Some((uuid, report_status(&report)));
            body = report;
        }
    }
    log
}

/// `POST /api/v1/commands` for every device: the command's UUID on a 201.
async fn enqueue(load: &Load, token: &str, udids: &[String], request_type: &str) -> Result<String, String> {
    let mut command = json!({"request_type": request_type});
    if request_type == "DeviceInformation" {
        command["Queries"] = json!(["DeviceName", "OSVersion", "SerialNumber", "BatteryLevel"]);
    }
    let body = json!({"targets": udids, "command": command, "push": false});
    let resp = load
        .client
        .post(format!("{}/api/v1/commands", load.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| format!("{e}"))?;
    if status != StatusCode::CREATED {
        return Err(format!("{status}: {v}"));
    }
    Ok(v["command_uuid"].as_str().expect("command_uuid").to_owned())
}

async fn get_json(load: &Load, token: &str, path: &str) -> Value {
    let resp =
        load.client.get(format!("{}{path}", load.base)).bearer_auth(token).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
    v
}

/// `GET /api/v1/audit/verify` over and over while the load runs: the chain's head moves with
/// every command queued, and no walk may take that for tampering.
async fn verify_while_loaded(load: Arc<Load>, token: String) -> usize {
    let mut verified = 0;
    while !load.stop.load(Ordering::SeqCst) {
        let resp = load.client.get(format!("{}/api/v1/audit/verify", load.base)).bearer_auth(&token).send().await;
        if let Ok(r) = resp {
            let status = r.status();
            if let Ok(v) = r.json::<Value>().await {
                if status == StatusCode::OK && v["ok"] == json!(true) {
                    verified += 1;
                } else if status == StatusCode::OK || status.is_server_error() {
                    load.violation(format!("GET /api/v1/audit/verify while loaded: {status} {v}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    verified
}

/// `lanyard audit verify` on the data and database, with the server killed.
fn audit_verify_cli(server: &ServerChild, when: &str) {
    let out = server.cli(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("audit log OK"),
        "lanyard audit verify {when}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_for(what: &str, load: &Load, server: &ServerChild, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > PROGRESS_TIMEOUT {
            panic!(
                "timed out waiting for {what} ({} results acknowledged, {} failed requests)\n{}",
                load.acked.load(Ordering::SeqCst),
                load.failed.load(Ordering::SeqCst),
                server.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sigkill_under_command_load(backend: Backend) {
    let started = Instant::now();
    let seed = std::env::var("LANYARD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    let label = match &backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres(_) => "postgres",
    };
    eprintln!("crash test ({label}): LANYARD_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let env = lanyard_env(dir.path(), &backend, addr);

    // This process sets up the data (CA, database, admin) and issues the devices' identities
    // from the device CA, as SCEP would; then it lets go of the database: from here on only the
    // child touches it.
    let sims: Vec<Arc<SimDevice>> = {
        let config = lanyard::config::Config::from_sources(None, &env).unwrap();
        let public_url = config.effective_public_url(Some(addr));
        let ctx = lanyard::setup::prepare(config, public_url, Arc::new(lanyard::clock::SystemClock)).await.unwrap().ctx;
        let mut sims = Vec::new();
        for _ in 0..DEVICES {
            let key = new_key().unwrap();
            let cert = ctx.issue_simulated_identity(&key, "Lanyard crash-test device").await.unwrap();
            sims.push(Arc::new(SimDevice::new(Kind::SupervisedIpad, TOPIC, cert, key)));
        }
        ctx.store.close().await;
        sims
    };
    let udids: Vec<String> = sims.iter().map(|s| s.udid.clone()).collect();

    let mut server = ServerChild::new(dir.path(), env, addr);
    let mut ready_times = Vec::new();
    server.start();
    ready_times.push(server.wait_ready(READY_TIMEOUT).await.unwrap_or_else(|e| panic!("{e}")));

    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).pool_idle_timeout(Duration::from_millis(300)).build().unwrap();
    let load = Arc::new(Load {
        base: server.base(),
        client,
        stop: AtomicBool::new(false),
        epoch: AtomicU64::new(0),
        acked: AtomicUsize::new(0),
        drained: (0..DEVICES).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicUsize::new(0),
        violations: Mutex::new(Vec::new()),
    });
    // One login: the session (a JWT signed with the data directory's key) outlives restarts.
    let token = {
        let resp = load
            .client
            .post(format!("{}/api/v1/auth/login", load.base))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    };

    // Enrolment over HTTP, before any kill.
    let mut enrolments = Vec::new();
    for chunk in sims.chunks(DEVICES.div_ceil(4)) {
        let (chunk, load) = (chunk.to_vec(), load.clone());
        enrolments.push(tokio::spawn(async move {
            for sim in chunk {
                for body in [sim.authenticate(), sim.token_update()] {
                    let (st, answer) = device_request(&load, &sim, "/mdm/checkin", body).await.unwrap();
                    assert_eq!(st, StatusCode::OK, "check-in of {}: {}", sim.udid, String::from_utf8_lossy(&answer));
                }
            }
        }));
    }
    for e in enrolments {
        e.await.unwrap();
    }

    let devices: Vec<_> = sims.iter().enumerate().map(|(i, sim)| tokio::spawn(play(i, sim.clone(), load.clone()))).collect();
    let verifier = tokio::spawn(verify_while_loaded(load.clone(), token.clone()));

    // Commands that got a 201, and queueing requests a kill cut off (maybe stored, maybe not).
    let mut queued: Vec<String> = Vec::new();
    let mut cut_off = 0;
    let mut kills = 0;
    for k in 0..KILLS {
        let request_type = ROUND_TYPES[k % ROUND_TYPES.len()];
        queued.push(enqueue(&load, &token, &udids, request_type).await.unwrap_or_else(|e| panic!("queueing round {k}: {e}")));
        // Kill after a random number of acknowledged results: the round leaves at least a
        // result per device to wait for.
        let want = load.acked.load(Ordering::SeqCst) + 1 + rng.below(DEVICES as u64 - 1) as usize;
        wait_for(&format!("{want} acknowledged results before kill {}", k + 1), &load, &server, || {
            load.acked.load(Ordering::SeqCst) >= want
        })
        .await;
        // Every other kill lands while a command is being queued.
        let racing = (k % 2 == 1).then(|| {
            let (load, token, udids) = (load.clone(), token.clone(), udids.clone());
            let request_type = ROUND_TYPES[(k + 1) % ROUND_TYPES.len()];
            tokio::spawn(async move { enqueue(&load, &token, &udids, request_type).await })
        });
        tokio::time::sleep(Duration::from_millis(rng.below(25))).await;
        let status = server.kill();
        load.epoch.fetch_add(1, Ordering::SeqCst);
        eprintln!("kill {} ({label}): {status} after {} acknowledged results", kills + 1, load.acked.load(Ordering::SeqCst));
        if let Some(r) = racing {
            match r.await.unwrap() {
                Ok(uuid) => queued.push(uuid),
                Err(_) => cut_off += 1,
            }
        }
        kills += 1;
        audit_verify_cli(&server, &format!("after kill {kills}"));
        server.start();
        if k == KILLS / 2 {
            // Once, a server still starting (devices already knocking) is killed too.
            tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
            let status = server.kill();
            load.epoch.fetch_add(1, Ordering::SeqCst);
            kills += 1;
            eprintln!("kill {kills} ({label}): {status} while starting");
            audit_verify_cli(&server, &format!("after kill {kills}, of a starting server"));
            server.start();
        }
        ready_times.push(server.wait_ready(READY_TIMEOUT).await.unwrap_or_else(|e| panic!("{e}")));
    }
    // The last round, after the last restart; then the queue drains.
    queued.push(enqueue(&load, &token, &udids, "DeviceInformation").await.unwrap_or_else(|e| panic!("queueing the last round: {e}")));
    let mark = load.epoch.fetch_add(1, Ordering::SeqCst) + 1;
    wait_for("the queue to drain after the last restart", &load, &server, || load.drained.iter().all(|d| d.load(Ordering::SeqCst) > mark))
        .await;
    load.stop.store(true, Ordering::SeqCst);
    let mut logs = Vec::new();
    for d in devices {
        logs.push(d.await.unwrap());
    }
    let verified_while_loaded = verifier.await.unwrap();

    // What the server stored, device by device.
    let mut redelivered = 0;
    let mut operator_commands: HashSet<String> = HashSet::new();
    for log in &logs {
        let page = get_json(&load, &token, &format!("/api/v1/devices/{}/commands?limit=1000", log.udid)).await;
        assert!(page["next_cursor"].is_null(), "one page holds a device's commands: {page}");
        let stored: BTreeMap<String, &Value> =
            page["items"].as_array().unwrap().iter().map(|c| (c["command_uuid"].as_str().unwrap().to_owned(), c)).collect();
        let received: HashSet<&String> = log.received.iter().collect();
        redelivered += log.received.len() - received.len();
        for (uuid, status) in &log.acked {
            let c = stored.get(uuid).unwrap_or_else(|| panic!("{}: result for {uuid} got a 200 but no such command is stored", log.udid));
            assert_eq!(c["status"], json!(status), "{}: the result for {uuid} got a 200 but was not stored: {c}", log.udid);
            assert!(!c["result"].is_null(), "{}: the result for {uuid} got a 200 but its report was not stored: {c}", log.udid);
        }
        for (uuid, c) in &stored {
            // Lanyard's own commands (`system`, `system:reconcile`, `system:activation-lock`...)
            // are not an operator's and carry no audit entry.
            if !c["created_by"].as_str().is_some_and(|by| by == "system" || by.starts_with("system:")) {
                operator_commands.insert(uuid.clone());
            }
            assert_eq!(c["status"], json!("acknowledged"), "{}: {uuid} ({}) never got through: {c}", log.udid, c["request_type"]);
            assert!(received.contains(uuid), "{}: {uuid} ({}) is acknowledged but was never handed over", log.udid, c["request_type"]);
        }
        for uuid in &queued {
            assert!(stored.contains_key(uuid), "{}: command {uuid} got a 201 but is not queued for the device", log.udid);
        }
    }
    for uuid in &queued {
        let c = get_json(&load, &token, &format!("/api/v1/commands/{uuid}")).await;
        let targets = c["targets"].as_array().unwrap();
        assert_eq!(targets.len(), DEVICES, "{uuid}: {c}");
        assert!(targets.iter().all(|t| t["status"] == json!("acknowledged")), "{uuid}: {c}");
    }
    // Every operator's command that is stored (a 201, or a request a kill cut off after it
    // committed) has its audit entry: the two commit together.
    let audited: HashSet<String> = get_json(&load, &token, "/api/v1/audit?action=command.enqueue&limit=1000").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    let unaudited: Vec<&String> = operator_commands.iter().filter(|c| !audited.contains(*c)).collect();
    assert!(unaudited.is_empty(), "{} stored commands have no command.enqueue audit entry: {unaudited:?}", unaudited.len());
    assert!(operator_commands.len() >= queued.len(), "{operator_commands:?}");
    let violations = load.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{} broken promises:\n{}", violations.len(), violations.join("\n"));
    assert!(verified_while_loaded > 0, "the audit chain was never verified while the load ran");

    // The last kill, and the chain verifies on what it left.
    server.kill();
    kills += 1;
    audit_verify_cli(&server, "after the last kill");
    let panics = server.logs_containing("panicked");
    assert!(panics.is_empty(), "the server panicked:\n{}", panics.join("\n"));

    let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
    let slowest = ready_times.iter().max().unwrap();
    eprintln!(
        "crash test ({label}): {} starts (slowest ready in {slowest:?}), {} SIGKILLs, {} commands queued ({} queueing requests cut off), \
         {acked} results acknowledged with a 200, {redelivered} redeliveries of unconfirmed results, {} requests refused or cut off by a kill, \
         {verified_while_loaded} audit verifications under load, {:.1} s",
        server.starts,
        kills,
        queued.len(),
        cut_off,
        load.failed.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
}
