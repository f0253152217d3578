//! `lanyard bench`: how fast the protocol core answers devices, measured the way devices load it.
//!
//! The server under test is a child process (`lanyard serve` on a loopback port, a temporary data
//! directory, SQLite or a PostgreSQL database), so that the CPU time and peak RSS it reports are
//! the server's own and not the load generator's. This process shares the data directory and the
//! database with it: it issues device identities from the CA directly (as SCEP would, see
//! [`crate::sim::SimIdentity`]) and then enrols every simulated device
//! over HTTP for real: Authenticate, TokenUpdate, and answering the initial inventory commands.
//! With `--enrolled M` the devices beyond the active `--devices N` are written straight into the
//! database through the store (the same `authenticate_device` + `token_update` an HTTP enrolment
//! runs; no certificate, no inventory), so the server answers over a table of M devices.
//!
//! Then, over plain HTTP/1.1 keep-alive connections (one per concurrent device):
//!
//! - **idle, max**: a closed loop; every connection sends the next device's Idle as soon as the
//!   previous answer arrives. Gives the throughput ceiling; latency there is queueing
//!   (Little's law: mean latency = connections / throughput).
//! - **idle, at R/s**: an open loop; Idle requests are scheduled at a fixed total rate over the
//!   same connections and latency is measured from the scheduled time (so a stalled server
//!   cannot hide its backlog). This is the latency a school sees at that load.
//! - **commands, max** and **commands, at R/s**: one `DeviceInformation` is queued for every
//!   active device through the API (`POST /api/v1/commands`, as an admin), then each device sends
//!   Idle, receives the command, checks it is the one queued for it, answers it Acknowledged (its
//!   own signed report for that command UUID) and receives an empty answer. Counted when that
//!   last answer arrives; afterwards the store is checked to hold every target as acknowledged.
//!
//! The simulated devices sign with RSA 2048 keys by default, as iPads and Macs do with the key
//! the SCEP payload has them make (`--device-key p256` for P-256). RSA keys are slow to make
//! and to sign with, so the load generator must not do either in the measured runs: devices
//! share a few keys (each device has its own certificate, which is what the server knows it
//! by), each device's Idle body is signed once at enrolment and reused, and each answer to the
//! queued command is signed after queueing, before the run starts. Every request is still
//! checked by the server as any other: the signature over the body, with a certificate that
//! chains to the CA and is bound to the device.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::sim::{Kind, SimDevice, SimIdentity};
use lanyard::clock::SystemClock;
use lanyard::config::Config;
use lanyard::context::Ctx;
use lanyard::protocol::command::{Command, DeviceInformation};
use lanyard::store::{AuthenticateRecord, DeviceFilter};
use lanyard_mocks::{MockApns, MockConfig};

mod ddm;
mod enrol;

/// The push topic the simulated devices report.
const TOPIC: &str = "com.apple.mgmt.External.6f3c1a7e-bench-4c2e-9d1a-lanyardbench";
const ADMIN_PASSWORD: &str = "lanyard-bench-admin-password";
/// At most this many UDIDs in one `POST /api/v1/commands` (the API takes 1 MiB of JSON).
const TARGETS_PER_REQUEST: usize = 10_000;
/// Connections used to enrol (enrolment writes; more would only queue on the database).
const ENROL_CONCURRENCY: usize = 64;
/// RSA keys the simulated devices share (making one takes about a tenth of a second).
const SHARED_RSA_KEYS: usize = 16;

/// The kind of key the simulated devices sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKey {
    /// RSA 2048, as iPads and Macs make for the SCEP payload's `Keysize` 2048.
    Rsa2048,
    /// P-256: quicker for the load generator to sign with, dearer for the server to verify.
    P256,
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKey::Rsa2048 => "RSA 2048",
            DeviceKey::P256 => "P-256",
        })
    }
}

/// Keys for the simulated devices: P-256 keys are made fresh for each; RSA keys are shared out
/// from a few made at the start.
struct DeviceKeys {
    kind: DeviceKey,
    rsa: Vec<PKey<Private>>,
    next: AtomicUsize,
}

impl DeviceKeys {
    async fn new(kind: DeviceKey) -> Result<DeviceKeys> {
        let mut rsa = Vec::new();
        if kind == DeviceKey::Rsa2048 {
            let makers: Vec<_> = (0..2)
                .map(|_| {
                    tokio::task::spawn_blocking(|| -> Result<Vec<PKey<Private>>> {
                        (0..SHARED_RSA_KEYS / 2).map(|_| Ok(PKey::from_rsa(Rsa::generate(2048)?)?)).collect()
                    })
                })
                .collect();
            for m in makers {
                rsa.extend(m.await??);
            }
        }
        Ok(DeviceKeys { kind, rsa, next: AtomicUsize::new(0) })
    }

    /// How many keys the devices share (0: each has its own).
    fn shared(&self) -> usize {
        self.rsa.len()
    }

    fn key(&self) -> Result<PKey<Private>> {
        match self.kind {
            DeviceKey::P256 => Ok(crate::sim::new_key()?),
            DeviceKey::Rsa2048 => Ok(self.rsa[self.next.fetch_add(1, Ordering::Relaxed) % self.rsa.len()].clone()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Idle check-ins against an empty queue.
    Idle,
    /// A command for every device, delivered and acknowledged.
    Commands,
    /// Both.
    All,
    /// The cost of each step of an Idle and of a command, timed in this process (no HTTP, no
    /// server child): plist parsing, each part of the signature check, each query.
    Steps,
    /// APNs pushes to --devices devices against the mock APNs (HTTP/2 over TLS on loopback), in
    /// this process: the push client's own speed alone.
    Push,
    /// Pushes through the server: `POST /api/v1/push` for every enrolled device (--enrolled,
    /// e.g. 100,000) with the server's own APNs client against the mock APNs, while the
    /// --devices devices keep sending Idle check-ins (at the first --rate, 0 for as fast as
    /// they can) until the last push is answered.
    PushServer,
    /// --devices enrolments as an iPad makes them: SCEP PKCSReq, Authenticate, TokenUpdate;
    /// where the time goes (the devices' key generation and signing, the server), and the
    /// enrolments a second the server answers per core of this machine.
    Enrol,
    /// Apple School Manager sync against the local mock of Apple's service (no added latency):
    /// the first sync of --devices devices (default 10,000; the issue's figure is 50,000), each
    /// assigned the default ADE profile, then an incremental sync of 1,000 changes, with the peak
    /// memory. In this process.
    AdeSync,
    /// Declarative Device Management in this process: --devices iPads' status reports (three
    /// rounds), then a change to their group's declarations and every device's sync after it,
    /// --concurrency at a time.
    Ddm,
}

/// `lanyard-bench [idle|commands|all|...] [options]` (or `lanyard bench ...`).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// Simulated devices with real certificates, enrolled over HTTP; the commands runs queue one
    /// command for each of them.
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Devices in the database in all (default: --devices). Those beyond --devices are written
    /// straight into the database through the store before the server starts.
    #[arg(long)]
    pub enrolled: Option<usize>,
    /// Concurrent devices: one HTTP/1.1 keep-alive connection each.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds each Idle run lasts.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Idle requests per second offered in the open-loop latency runs: one run per rate, e.g.
    /// `--rate 1000,2000,3000` (0: none).
    #[arg(long, value_delimiter = ',', default_value = "5000")]
    pub rate: Vec<f64>,
    /// Commands per second offered in the open-loop commands runs, one run per rate (0: none).
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    pub command_rate: Vec<f64>,
    /// Database: SQLite in the temporary data directory by default, or the postgres:// URL of
    /// an EMPTY database. (LANYARD_DATABASE_URL is not used here, so a bench can never write
    /// into a school's database.)
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// LANYARD_LOG for the server (default: its usual `info`, one line per request, to a file).
    #[arg(long, value_name = "FILTER")]
    pub server_log: Option<String>,
    /// Keep the temporary data directory and the server's log.
    #[arg(long)]
    pub keep: bool,
    /// The simulated devices' keys: `rsa2048` as real iPads and Macs, or `p256`.
    #[arg(long, value_enum, default_value = "rsa2048")]
    pub device_key: DeviceKey,
    /// The lanyard binary to run as the server (default: `lanyard` beside this binary, else on
    /// PATH; `lanyard bench` passes its own path in LANYARD_BENCH_SERVER_EXE).
    #[arg(long, hide = true, env = SERVER_EXE_ENV)]
    pub server_exe: Option<PathBuf>,
}

/// The environment variable in which `lanyard bench` tells `lanyard-bench` which server binary
/// to run (its own).
pub const SERVER_EXE_ENV: &str = "LANYARD_BENCH_SERVER_EXE";

/// The `lanyard-bench` command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "lanyard-bench",
    version,
    about = "Measure Lanyard's protocol core: simulated devices with real certificates against a server child process (also run as `lanyard bench`)."
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// The `lanyard-bench` binary: parse `argv` (program name first), log as `LANYARD_LOG_FORMAT`
/// says (`pretty` or `json`), run, and exit as [`main`] does (2 on bad arguments).
pub fn cli_main(argv: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    use clap::Parser;
    let cli = Cli::parse_from(argv);
    let format = match std::env::var("LANYARD_LOG_FORMAT").as_deref() {
        Ok("json") => lanyard::config::LogFormat::Json,
        _ => lanyard::config::LogFormat::Pretty,
    };
    lanyard::logging::init(format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lanyard-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main(cli.args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lanyard-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The server binary to run when `--server-exe` is not given: `lanyard` in this binary's
/// directory (where cargo builds both), else the first on PATH.
fn default_server_exe() -> Result<PathBuf> {
    let name = format!("lanyard{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        let beside = dir.join(&name);
        if beside.is_file() {
            return Ok(beside);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("cannot find the lanyard binary beside lanyard-bench or on PATH (build it: cargo build --release)"))
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// `idle` or `commands`.
    pub name: &'static str,
    /// None: closed loop (as fast as the server answers); Some(r): r per second offered.
    pub offered_rate: Option<f64>,
    pub concurrency: usize,
    /// Requests answered as expected.
    pub requests: u64,
    /// Requests that failed or got an unexpected answer.
    pub errors: u64,
    /// Open loop only: scheduled but not sent before the deadline (the server fell behind).
    pub unsent: u64,
    pub elapsed: Duration,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub commands: Option<CommandStats>,
    pub pushes: Option<PushStats>,
    pub enrolment: Option<enrol::EnrolStats>,
    /// Server CPU time over the run, in cores (1.0 = one core busy all the time).
    pub server_cpu_cores: f64,
    /// Server CPU time per answered request, in microseconds: unlike req/s, this hardly depends
    /// on what else the machine is doing.
    pub server_cpu_us_per_request: f64,
    /// PostgreSQL only: CPU of the database backends serving the bench database, in cores.
    pub database_cpu_cores: Option<f64>,
    pub database_cpu_us_per_request: Option<f64>,
    /// The load generator's (this process's) CPU, in cores.
    pub bench_cpu_cores: f64,
    /// What every other process on the machine used meanwhile, in cores (the benchmark shares
    /// the machine: this is what it could not have).
    pub other_cpu_cores: f64,
    /// The server's largest VmRSS sampled during the run.
    pub server_rss_max_kb: u64,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommandStats {
    /// Commands delivered and acknowledged (the device got the empty answer after its report).
    pub completed: u64,
    pub per_sec: f64,
    /// From the Idle being sent (or scheduled) to the empty answer after the acknowledgement.
    pub round_trip_p50_ms: f64,
    pub round_trip_p99_ms: f64,
    /// Targets the store holds as `acknowledged` afterwards.
    pub verified_acknowledged: u64,
    /// Seconds `POST /api/v1/commands` took to queue them all.
    pub enqueue_secs: f64,
}

/// What `POST /api/v1/push` did in a push-server run.
#[derive(Debug, Clone)]
pub struct PushStats {
    /// Devices asked for, over `requests` API requests sent at once.
    pub targets: usize,
    pub requests: usize,
    /// What the server's answers summed up to.
    pub delivered: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Pushes the mock APNs accepted.
    pub received: usize,
    /// From the first request to the mock accepting the last push.
    pub secs_to_last_push: f64,
    /// From the first request to the last answer (the server records every outcome first).
    pub secs_to_last_answer: f64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub backend: &'static str,
    pub device_key: DeviceKey,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `/proc/loadavg`'s 1, 5 and 15 minute load averages when the runs started and ended.
    pub load_before: String,
    pub load_after: String,
    /// Devices enrolled over HTTP (the active ones).
    pub devices: usize,
    /// Devices in the database in all.
    pub enrolled: usize,
    pub concurrency: usize,
    pub store_enrol_secs: f64,
    pub http_enrol_secs: f64,
    pub phases: Vec<PhaseReport>,
    /// VmHWM: the server's peak resident memory over its whole life.
    pub server_peak_rss_kb: u64,
    pub server_rss_end_kb: u64,
    pub kept_dir: Option<PathBuf>,
}

impl Report {
    pub fn errors(&self) -> u64 {
        self.phases.iter().map(|p| p.errors).sum()
    }
}

/// `lanyard bench ...` from the command line.
pub async fn main(args: BenchArgs) -> Result<ExitCode> {
    if args.scenario == Scenario::Push {
        return push(args.devices).await;
    }
    if args.scenario == Scenario::Steps {
        return steps(args.database_url.as_deref(), args.device_key).await;
    }
    if args.scenario == Scenario::Ddm {
        return ddm::run(args.devices, args.concurrency, args.database_url.as_deref()).await;
    }
    if args.scenario == Scenario::AdeSync {
        return ade_sync(args.devices, args.database_url.as_deref()).await;
    }
    let report = tokio::select! {
        r = run(args) => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the server was stopped"),
    };
    println!("{report}");
    Ok(if report.errors() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `lanyard bench push`: [`lanyard_mocks::bench_push`], with the CPU it took.
async fn push(n: usize) -> Result<ExitCode> {
    let cpu = proc_cpu_secs("/proc/self/stat");
    let r = lanyard_mocks::bench_push(n).await?;
    let cpu = proc_cpu_secs("/proc/self/stat") - cpu;
    println!("push (mock APNs, loopback): {r}");
    println!(
        "time to the last push {:.2} s; CPU of the client and the mock together {:.1} s ({:.2} cores); peak RSS of this process {}",
        r.elapsed.as_secs_f64(),
        cpu,
        cpu / r.elapsed.as_secs_f64().max(1e-9),
        mb(proc_status_kb(std::process::id(), "VmHWM").unwrap_or(0))
    );
    Ok(if r.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Lanyard's services in this process, on SQLite in `dir` or on `database_url`, with `env` on top.
async fn in_process(dir: &WorkDir, database_url: Option<&str>, env: &[(&str, String)]) -> Result<lanyard::context::Ctx> {
    let config_file = dir.path.join("lanyard.toml");
    std::fs::write(&config_file, "")?;
    let mut vars = BTreeMap::new();
    vars.insert("LANYARD_DATA_DIR".to_owned(), dir.path.join("data").display().to_string());
    vars.insert(
        "LANYARD_DATABASE_URL".to_owned(),
        database_url.map(str::to_owned).unwrap_or_else(|| format!("sqlite://{}", dir.path.join("data/lanyard.db").display())),
    );
    vars.insert("LANYARD_ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned());
    for (k, v) in env {
        vars.insert((*k).to_owned(), v.clone());
    }
    let config = Config::from_sources(Some(&config_file), &vars).map_err(|e| anyhow!("{e}"))?;
    Ok(lanyard::setup::prepare(config, "http://localhost".into(), Arc::new(SystemClock)).await?.ctx)
}

/// `lanyard bench ade-sync`: Lanyard's services in this process (SQLite in a temporary
/// directory, or `database_url`) against [`lanyard_mocks::MockAde`] on loopback.
async fn ade_sync(n: usize, database_url: Option<&str>) -> Result<ExitCode> {
    use lanyard_mocks::{MockAde, MockDevice, smime_token_file};
    let mock = MockAde::start().await?;
    mock.add_devices((0..n).map(|i| MockDevice::ipad(&format!("BENCH{i:07}"))));
    let dir = WorkDir::new(false)?;
    let ctx = in_process(&dir, database_url, &[("LANYARD_ADE_URL", mock.url())]).await?;
    let actor = lanyard::services::auth::Actor::cli();
    let pem = ctx.ade.public_key().await.map_err(|e| anyhow!("{e}"))?;
    let token = ctx.ade.upload_token(&actor, &smime_token_file(pem.as_bytes(), &mock.token_json())?).await.map_err(|e| anyhow!("{e}"))?;
    // Every device gets one ADE profile, as a school's default.
    let input: lanyard::services::ade::profiles::AdeProfileInput =
        serde_json::from_value(json!({"name": "Pupil iPads", "skip_setup_items": ["Siri"]}))?;
    let profile = ctx.ade.create_profile(&actor, input).await.map_err(|e| anyhow!("{e}"))?;
    let rules = lanyard::services::ade::assign::AssignmentRules { default_profile: Some(profile.id), rules: vec![] };
    ctx.ade.set_assignment_rules(&actor, token.id, rules).await.map_err(|e| anyhow!("{e}"))?;
    let rss_before = proc_status_kb(std::process::id(), "VmRSS").unwrap_or(0);
    let started = Instant::now();
    let full = ctx.ade.sync_token(token.id).await.map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("a sync was already running"))?;
    let full_secs = started.elapsed().as_secs_f64();
    // Apple reports each assignment as a change: read those before timing 1,000 others.
    let started = Instant::now();
    let settle = ctx.ade.sync_token(token.id).await.map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("a sync was already running"))?;
    let settle_secs = started.elapsed().as_secs_f64();
    for i in 0..1000.min(n) {
        mock.modify_device(&format!("BENCH{:07}", i * (n / 1000.min(n)).max(1)), |d| d.asset_tag = Some(format!("TAG-{i}")));
    }
    let started = Instant::now();
    let incremental =
        ctx.ade.sync_token(token.id).await.map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("a sync was already running"))?;
    let incremental_secs = started.elapsed().as_secs_f64();
    let listed = ctx.ade.token(token.id).await.map_err(|e| anyhow!("{e}"))?.devices;
    println!(
        "ade-sync (mock ASM, loopback, {}): {n} devices fetched ({} pages) and assigned a profile ({} assigned): {full_secs:.2} s \
         ({:.0} devices/s); the next sync, reading back Apple's {} assignment changes: {settle_secs:.2} s; \
         incremental sync of {} changes: {incremental_secs:.3} s; {listed} devices stored",
        ctx.store.backend(),
        full.pages,
        full.assigned,
        n as f64 / full_secs.max(1e-9),
        settle.devices,
        incremental.devices
    );
    println!(
        "memory of this process (Lanyard and the mock, which holds every device): RSS {} before the sync, peak {}",
        mb(rss_before),
        mb(proc_status_kb(std::process::id(), "VmHWM").unwrap_or(0))
    );
    Ok(if listed as usize == n && full.assigned == n && incremental.devices == 1000.min(n) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `lanyard bench steps`: time each step of the device path, one after the other, in this
/// process, on an enrolled device (SQLite in a temporary directory, or `database_url`).
async fn steps(database_url: Option<&str>, device_key: DeviceKey) -> Result<ExitCode> {
    use lanyard::protocol::cms::verify_mdm_signature;
    use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509, X509PurposeId, X509StoreContext};

    const N: u32 = 2000;
    let dir = WorkDir::new(false)?;
    let ctx = in_process(&dir, database_url, &[]).await?;
    // Devices enrolled through the services: one for the Idle steps, M to command once each.
    const M: usize = 200;
    let keys = DeviceKeys::new(device_key).await?;
    let mut sims = Vec::new();
    for _ in 0..=M {
        let key = keys.key()?;
        let cert = ctx.issue_simulated_identity(&key, "Lanyard bench device").await?;
        let d = SimDevice::new(Kind::SupervisedIpad, TOPIC, cert, key);
        for body in [d.authenticate(), d.token_update()] {
            ctx.devices.checkin(&body, Some(&d.sign(&body)), None).await?;
        }
        drain(&ctx, &d).await?;
        sims.push(d);
    }
    let d = &sims[0];
    let body = d.idle();
    let sig = d.sign(&body);
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sig)?;
    let cert_der = d.cert.to_der()?;
    let spki = d.cert.public_key()?.public_key_to_der()?;
    let p7 = Pkcs7::from_der(&der)?;
    let none = Stack::new()?;
    let empty = X509StoreBuilder::new()?.build();
    let mut b = X509StoreBuilder::new()?;
    b.add_cert(ctx.pki.ca_cert.clone())?;
    b.set_purpose(X509PurposeId::ANY)?;
    b.set_flags(openssl::x509::verify::X509VerifyFlags::PARTIAL_CHAIN)?;
    let ca_store = b.build();
    let sha = lanyard::services::enrollment::cert_sha256(&d.cert)?;

    let mut rows: Vec<(&str, f64)> = Vec::new();
    macro_rules! time {
        ($name:expr, $e:expr) => {{
            let t = Instant::now();
            for _ in 0..N {
                let _ = std::hint::black_box($e);
            }
            rows.push(($name, t.elapsed().as_secs_f64() * 1e6 / N as f64));
        }};
    }
    time!("parse the Idle plist", lanyard::protocol::report::parse(&body));
    time!("verify_mdm_signature, in all", verify_mdm_signature(&body, &sig, &ctx.pki.ca_cert));
    time!("- parse the CMS (with its certificate)", Pkcs7::from_der(&der));
    time!("  - parse the certificate alone", X509::from_der(&cert_der));
    time!("    - decode its public key alone", openssl::pkey::PKey::public_key_from_der(&spki));
    time!(
        "- check the signature over the body",
        p7.verify(&none, &empty, Some(&body), None, Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY | Pkcs7Flags::DETACHED,)
    );
    time!("- check the chain to the CA", {
        let mut c = X509StoreContext::new()?;
        c.init(&ca_store, &d.cert, &none, |c| c.verify_cert())
    });
    time!("SHA-256 of the certificate", lanyard::services::enrollment::cert_sha256(&d.cert));
    time!("SignerCache::verify, a known certificate", ctx.signers.verify(&body, &sig, &ctx.pki.ca_cert));
    time!("device_by_cert (query)", ctx.store.device_by_cert(&sha).await);
    time!("device_session (query)", ctx.store.device_session(&sha).await);
    time!("next_command, empty queue (query)", ctx.store.next_command(&d.udid, true, ctx.now()).await);
    time!("connect: an Idle, in all", ctx.devices.connect(&body, Some(&sig), None).await);
    // A command for each of M devices, queued (not timed), then Idle -> the command, and
    // Acknowledged -> empty.
    let cmd = lanyard::protocol::command::Command::DeviceInformation(lanyard::protocol::command::DeviceInformation::inventory());
    let (mut deliver, mut ack) = (0.0, 0.0);
    for c in &sims[1..] {
        ctx.commands.queue_command("bench", &cmd, std::slice::from_ref(&c.udid), None).await?;
        let idle = c.idle();
        let idle_sig = c.sign(&idle);
        let t = Instant::now();
        let command = ctx.devices.connect(&idle, Some(&idle_sig), None).await?.ok_or_else(|| anyhow!("no command queued"))?;
        deliver += t.elapsed().as_secs_f64();
        let (_, _, report) = c.answer(&command).ok_or_else(|| anyhow!("not a command"))?;
        let report_sig = c.sign(&report);
        let t = Instant::now();
        if ctx.devices.connect(&report, Some(&report_sig), None).await?.is_some() {
            bail!("a second command was handed out");
        }
        ack += t.elapsed().as_secs_f64();
    }
    rows.push(("connect: an Idle that gets a command", deliver * 1e6 / M as f64));
    rows.push(("connect: Acknowledged (DeviceInformation)", ack * 1e6 / M as f64));
    // The parts of an acknowledgement that can be repeated.
    let c = &sims[1];
    let (_, _, answer) = c.answer(&cmd.to_plist("0B7C2F5E-0000-4000-8000-000000000001")).ok_or_else(|| anyhow!("not a command"))?;
    let answer_sig = c.sign(&answer);
    let parsed = lanyard::protocol::report::parse(&answer)?;
    time!("- parse the DeviceInformation answer", lanyard::protocol::report::parse(&answer));
    time!("- its JSON view", parsed.to_json().to_string());
    time!("- SignerCache::verify, the answer", ctx.signers.verify(&answer, &answer_sig, &ctx.pki.ca_cert));
    time!("- apply_inventory (query)", ctx.devices.apply_inventory(&c.udid, "DeviceInformation", &parsed, ctx.now()).await);
    time!("- refresh_smart_groups, none defined (list_groups query)", ctx.profiles.refresh_smart_groups(Some(&c.udid)).await);
    // A device with a long history: 1,000 finished commands.
    let old = &sims[1];
    for _ in 0..1000 {
        ctx.commands.queue_command("bench", &cmd, std::slice::from_ref(&old.udid), None).await?;
        drain(&ctx, old).await?;
    }
    time!("next_command, empty, 1,000 finished (query)", ctx.store.next_command(&old.udid, true, ctx.now()).await);

    println!("lanyard bench steps: {}, OpenSSL {}, {N} times each, one after the other", ctx.store.backend(), openssl::version::version());
    for (name, us) in rows {
        println!("{name:<46} {us:>9.1} us");
    }
    Ok(ExitCode::SUCCESS)
}

/// Idle, then acknowledge everything the server hands out, through the services.
async fn drain(ctx: &Ctx, d: &SimDevice) -> Result<()> {
    let idle = d.idle();
    let mut next = ctx.devices.connect(&idle, Some(&d.sign(&idle)), None).await?;
    while let Some(cmd) = next {
        let (_, _, report) = d.answer(&cmd).ok_or_else(|| anyhow!("not a command"))?;
        next = ctx.devices.connect(&report, Some(&d.sign(&report)), None).await?;
    }
    Ok(())
}

/// Run the benchmark and return what it measured.
pub async fn run(args: BenchArgs) -> Result<Report> {
    let n = args.devices;
    let enrolled = args.enrolled.unwrap_or(n);
    if matches!(args.scenario, Scenario::Push | Scenario::Steps) {
        bail!("the push and steps scenarios have no server run: use lanyard bench push|steps");
    }
    if n == 0 || args.concurrency == 0 {
        bail!("--devices and --concurrency must be at least 1");
    }
    if enrolled < n {
        bail!("--enrolled ({enrolled}) must be at least --devices ({n})");
    }
    let bad_rate = |r: &f64| r.is_nan() || *r < 0.0;
    if args.duration.is_nan() || args.duration <= 0.0 || args.rate.iter().any(bad_rate) || args.command_rate.iter().any(bad_rate) {
        bail!("--duration must be positive, --rate and --command-rate not negative");
    }
    let exe = match &args.server_exe {
        Some(p) => p.clone(),
        None => default_server_exe()?,
    };

    let dir = WorkDir::new(args.keep)?;
    let data_dir = dir.path.join("data");
    let config_file = dir.path.join("lanyard.toml");
    std::fs::write(&config_file, "# lanyard bench: everything comes from the environment\n")?;
    let (database_url, backend) = match &args.database_url {
        Some(u) if u.starts_with("postgres") => (u.clone(), "postgres"),
        Some(u) if u.starts_with("sqlite:") => (u.clone(), "sqlite"),
        Some(u) => bail!("--database-url must be postgres://... or sqlite://..., not {u:?}"),
        None => (format!("sqlite://{}", data_dir.join("lanyard.db").display()), "sqlite"),
    };
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // The push-server scenario: Apple's side is the mock APNs in this process, and the server
    // gets a push certificate it trusts.
    let apns = match args.scenario {
        Scenario::PushServer => Some(start_mock_apns(&dir.path).await?),
        _ => None,
    };
    let mut env = BTreeMap::new();
    if let Some(a) = &apns {
        env.insert("LANYARD_APNS_URL".to_owned(), a.mock.url());
        env.insert("LANYARD_APNS_CA_FILE".to_owned(), a.ca_file.display().to_string());
    }
    for (k, v) in [
        ("LANYARD_CONFIG", config_file.display().to_string()),
        ("LANYARD_DATA_DIR", data_dir.display().to_string()),
        ("LANYARD_DATABASE_URL", database_url.clone()),
        ("LANYARD_LISTEN", addr.to_string()),
        ("LANYARD_TLS", "false".into()),
        ("LANYARD_HOSTNAME", "localhost".into()),
        ("LANYARD_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ("LANYARD_ORGANIZATION", "Lanyard Bench School".into()),
    ] {
        env.insert(k.to_owned(), v);
    }

    // This process prepares the data directory and database first (CA, migrations, admin), so
    // the server starts on a finished set-up, as it would on any day but the first.
    let config = Config::from_sources(Some(&config_file), &env).map_err(|e| anyhow!("{e}"))?;
    let public_url = config.effective_public_url(Some(addr));
    let ctx = lanyard::setup::prepare(config, public_url, Arc::new(SystemClock)).await?.ctx;
    let existing = ctx.store.list_devices(&DeviceFilter { limit: 1, ..Default::default() }).await?;
    if !existing.is_empty() {
        bail!("the database already holds devices: give lanyard bench an empty database (e.g. CREATE DATABASE bench2)");
    }
    if let Some(a) = &apns {
        let actor = lanyard::services::auth::Actor { name: "cli".into(), ip: None };
        let upload = lanyard::services::push::certificate::PushCertUpload::Pem { cert_pem: a.cert_pem.clone(), key_pem: a.key_pem.clone() };
        ctx.push.load_push_cert(&actor, upload, false).await?;
    }

    let started = Instant::now();
    if enrolled > n {
        enrol_through_store(&ctx, enrolled - n).await?;
    }
    let store_enrol_secs = started.elapsed().as_secs_f64();

    let mut server = ServerProcess::start(&exe, &dir.path, &env, args.server_log.as_deref())?;
    server.wait_ready(addr).await?;
    let monitor = Monitor::start(server.pid(), &database_url).await?;
    eprintln!("lanyard bench: {backend}, server pid {} on {addr}, data in {}", server.pid(), dir.path.display());

    let keys = Arc::new(DeviceKeys::new(args.device_key).await?);
    if args.scenario == Scenario::Enrol {
        let load_before = load_average();
        let phase = match enrol::run(&ctx, &keys, addr, n, args.concurrency, &monitor).await {
            Ok(p) => p,
            Err(e) => bail!("{e:#}\n{}", server.log_tail()),
        };
        let report = Report {
            backend,
            device_key: args.device_key,
            devices: n,
            enrolled,
            concurrency: args.concurrency,
            store_enrol_secs,
            http_enrol_secs: phase.elapsed.as_secs_f64(),
            server_peak_rss_kb: proc_status_kb(server.pid(), "VmHWM").unwrap_or(0),
            server_rss_end_kb: proc_status_kb(server.pid(), "VmRSS").unwrap_or(0),
            phases: vec![phase],
            kept_dir: args.keep.then(|| dir.path.clone()),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_before,
            load_after: load_average(),
        };
        monitor.stop();
        server.stop().await;
        return Ok(report);
    }
    let started = Instant::now();
    let devices = match enrol_over_http(&ctx, &keys, addr, n).await {
        Ok(d) => Arc::new(d),
        Err(e) => bail!("{e:#}\n{}", server.log_tail()),
    };
    let http_enrol_secs = started.elapsed().as_secs_f64();
    eprintln!("enrolled {n} devices over HTTP in {http_enrol_secs:.1} s ({:.0} devices/s)", n as f64 / http_enrol_secs);

    let load_before = load_average();
    let c = args.concurrency;
    let duration = Duration::from_secs_f64(args.duration);
    let warm_up = Duration::from_secs_f64((args.duration / 5.0).min(2.0));
    let mut phases = Vec::new();
    // Warm up: connections open, caches filled. Not measured.
    idle_run(&devices, addr, c, warm_up, None, &monitor).await;
    if matches!(args.scenario, Scenario::Idle | Scenario::All) {
        let p = idle_run(&devices, addr, c, duration, None, &monitor).await;
        eprintln!("{}", p.line());
        phases.push(p);
        for &rate in args.rate.iter().filter(|r| **r > 0.0) {
            let p = idle_run(&devices, addr, c, duration, Some(rate), &monitor).await;
            eprintln!("{}", p.line());
            phases.push(p);
        }
    }
    if let Some(a) = &apns {
        let token = login(addr).await?;
        let rate = args.rate.first().copied().filter(|r| *r > 0.0);
        let p = push_run(&ctx, &devices, addr, &token, c, rate, &monitor, &a.mock).await?;
        eprintln!("{}", p.line());
        phases.push(p);
    }
    if matches!(args.scenario, Scenario::Commands | Scenario::All) {
        let token = login(addr).await?;
        let rates = args.command_rate.iter().filter(|r| **r > 0.0).map(|r| Some(*r));
        for rate in std::iter::once(None).chain(rates) {
            let p = commands_run(&ctx, &devices, addr, &token, c, rate, &monitor).await?;
            eprintln!("{}", p.line());
            phases.push(p);
        }
    }

    let load_after = load_average();
    let server_rss_end_kb = proc_status_kb(server.pid(), "VmRSS").unwrap_or(0);
    let server_peak_rss_kb = proc_status_kb(server.pid(), "VmHWM").unwrap_or(0);
    monitor.stop();
    server.stop().await;
    Ok(Report {
        backend,
        device_key: args.device_key,
        devices: n,
        enrolled,
        concurrency: c,
        store_enrol_secs,
        http_enrol_secs,
        phases,
        server_peak_rss_kb,
        server_rss_end_kb,
        kept_dir: args.keep.then(|| dir.path.clone()),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before,
        load_after,
    })
}

// ---------------------------------------------------------------------------------------------
// Enrolment

/// A simulated device and its Idle, signed once.
struct BenchDevice {
    sim: SimDevice,
    idle_body: Bytes,
    idle_sig: HeaderValue,
}

/// Write `count` enrolled devices straight into the database (see the module doc).
async fn enrol_through_store(ctx: &Ctx, count: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start("enrolling through the store", count, next.clone());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (ctx, next) = (ctx.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
                let udid = format!("{id}{}", &id[..8]);
                let mut cert = [0u8; 32];
                let mut token = [0u8; 32];
                openssl::rand::rand_bytes(&mut cert)?;
                openssl::rand::rand_bytes(&mut token)?;
                let now = ctx.now();
                ctx.store
                    .authenticate_device(
                        &AuthenticateRecord {
                            udid: udid.clone(),
                            serial_number: Some(format!("SIM{}", &id[..9])),
                            model: Some("MPQ03B/A".into()),
                            model_name: Some("iPad".into()),
                            product_name: Some("iPad13,18".into()),
                            device_name: Some(format!("iPad {}", &id[..4])),
                            os_version: Some("17.5".into()),
                            build_version: Some("21F79".into()),
                            platform: "iPadOS".into(),
                            topic: TOPIC.into(),
                            imei: None,
                            meid: None,
                            cert_sha256: hex::encode(cert),
                            enrollment_token_id: None,
                            at: now,
                            signed_at: None,
                        },
                        None,
                    )
                    .await?;
                ctx.store
                    .token_update(
                        &lanyard::store::TokenUpdateRecord {
                            udid: &udid,
                            token: &token,
                            push_magic: &id,
                            unlock_token_sealed: None,
                            awaiting_configuration: false,
                            at: now,
                        },
                        &[],
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    progress.finish();
    Ok(())
}

/// Issue identities and enrol `n` devices over HTTP: Authenticate, TokenUpdate, then Idle and
/// acknowledge the initial inventory commands until the queue is empty.
async fn enrol_over_http(ctx: &Ctx, keys: &Arc<DeviceKeys>, addr: SocketAddr, n: usize) -> Result<Vec<BenchDevice>> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start("enrolling over HTTP", n, done.clone());
    let mut tasks = Vec::new();
    for _ in 0..ENROL_CONCURRENCY.min(n) {
        let (ctx, keys, next, done) = (ctx.clone(), keys.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                mine.push(enrol_one(&ctx, &mut client, keys.key()?).await?);
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(mine)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    progress.finish();
    Ok(all)
}

async fn enrol_one(ctx: &Ctx, client: &mut Client, key: PKey<Private>) -> Result<BenchDevice> {
    let cert = ctx.issue_simulated_identity(&key, "Lanyard bench device").await?;
    let sim = SimDevice::new(Kind::SupervisedIpad, TOPIC, cert, key);
    for body in [sim.authenticate(), sim.token_update()] {
        let sig = header_value(sim.sign(&body))?;
        let (status, answer) = client.device("/mdm/checkin", body.into(), sig).await?;
        if status != StatusCode::OK {
            bail!("check-in of {}: {status} {}", sim.udid, lossy(&answer));
        }
    }
    let idle_body = Bytes::from(sim.idle());
    let idle_sig = header_value(sim.sign(&idle_body))?;
    let (mut status, mut answer) = client.device("/mdm/connect", idle_body.clone(), idle_sig.clone()).await?;
    for _ in 0..16 {
        if status != StatusCode::OK {
            bail!("connect of {}: {status} {}", sim.udid, lossy(&answer));
        }
        if answer.is_empty() {
            return Ok(BenchDevice { sim, idle_body, idle_sig });
        }
        let (_, _, report) = sim.answer(&answer).ok_or_else(|| anyhow!("not a command: {}", lossy(&answer)))?;
        let sig = header_value(sim.sign(&report))?;
        (status, answer) = client.device("/mdm/connect", report.into(), sig).await?;
    }
    bail!("{} was still being sent commands after 16", sim.udid)
}

// ---------------------------------------------------------------------------------------------
// Runs

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    round_trips_us: Vec<u32>,
    requests: u64,
    errors: u64,
    unsent: u64,
    commands: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        self.round_trips_us.extend(o.round_trips_us);
        self.requests += o.requests;
        self.errors += o.errors;
        self.unsent += o.unsent;
        self.commands += o.commands;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// Idle check-ins for `duration`: closed loop (`rate` None) or `rate` per second offered.
async fn idle_run(
    devices: &Arc<Vec<BenchDevice>>,
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
    monitor: &Monitor,
) -> PhaseReport {
    idle_until(devices, addr, concurrency, duration, rate, monitor, "idle", None).await
}

/// [`idle_run`], ending early when `stop` is set.
#[allow(clippy::too_many_arguments)]
async fn idle_until(
    devices: &Arc<Vec<BenchDevice>>,
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
    monitor: &Monitor,
    name: &'static str,
    stop: Option<Arc<AtomicBool>>,
) -> PhaseReport {
    let mark = monitor.begin().await;
    let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
    let deadline = t0 + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (devices, stop) = (devices.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let mut tally = Tally::default();
            tokio::time::sleep_until(t0).await;
            for k in 0.. {
                if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                    break;
                }
                let i = w + k * concurrency;
                let start = match rate {
                    Some(r) => {
                        let at = t0 + Duration::from_secs_f64(i as f64 / r);
                        if at >= deadline {
                            break;
                        }
                        if tokio::time::Instant::now() >= deadline {
                            // Behind schedule at the deadline: the rest was never sent.
                            let total = (duration.as_secs_f64() * r).ceil() as usize;
                            let mine = total.saturating_sub(w).div_ceil(concurrency);
                            tally.unsent += mine.saturating_sub(k) as u64;
                            break;
                        }
                        tokio::time::sleep_until(at).await;
                        at
                    }
                    None => {
                        let now = tokio::time::Instant::now();
                        if now >= deadline {
                            break;
                        }
                        now
                    }
                };
                let d = &devices[i % devices.len()];
                match client.device("/mdm/connect", d.idle_body.clone(), d.idle_sig.clone()).await {
                    Ok((StatusCode::OK, body)) if body.is_empty() => {
                        tally.requests += 1;
                        tally.latencies_us.push(micros(start.elapsed()));
                    }
                    Ok((status, body)) => tally.error(format!("Idle from {}: {status} {}", d.sim.udid, lossy(&body))),
                    Err(e) => tally.error(format!("Idle from {}: {e:#}", d.sim.udid)),
                }
            }
            tally
        }));
    }
    let tally = join_tallies(tasks).await;
    let elapsed = t0.elapsed();
    finish_phase(name, rate, concurrency, tally, elapsed, monitor, mark).await
}

/// The mock APNs of a push-server run, and the push certificate the server is given.
struct BenchApns {
    mock: MockApns,
    ca_file: PathBuf,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

async fn start_mock_apns(dir: &Path) -> Result<BenchApns> {
    let (cert, key, ca, _) = lanyard_mocks::certificates::try_test_push_certificate(TOPIC, 365)?;
    let mut config = MockConfig::new(ca);
    config.record = false;
    let mock = MockApns::start_with(config).await?;
    let ca_file = dir.join("mock-apns-ca.pem");
    std::fs::write(&ca_file, mock.ca_pem())?;
    Ok(BenchApns { mock, ca_file, cert_pem: cert.to_pem()?, key_pem: key.private_key_to_pem_pkcs8()? })
}

/// How many devices one `POST /api/v1/push` names: its body stays under the API's 1 MiB.
const PUSH_TARGETS_PER_REQUEST: usize = 20_000;

/// Push every enrolled device through `POST /api/v1/push` (all requests at once), while the
/// active devices keep checking in; the check-ins stop when the last answer arrives.
#[allow(clippy::too_many_arguments)]
async fn push_run(
    ctx: &Ctx,
    devices: &Arc<Vec<BenchDevice>>,
    addr: SocketAddr,
    token: &str,
    concurrency: usize,
    rate: Option<f64>,
    monitor: &Monitor,
    mock: &MockApns,
) -> Result<PhaseReport> {
    let mut udids = Vec::new();
    let mut filter = DeviceFilter { enrolled: Some(true), limit: 1000, ..Default::default() };
    loop {
        let page = ctx.store.list_devices(&filter).await?;
        let Some(last) = page.last().map(|d| d.udid.clone()) else { break };
        udids.extend(page.into_iter().map(|d| d.udid));
        filter.after_udid = Some(last);
    }
    let before = mock.count();
    let stop = Arc::new(AtomicBool::new(false));
    let idle = idle_until(devices, addr, concurrency, Duration::from_secs(600), rate, monitor, "idle while pushing", Some(stop.clone()));
    let pushes = async {
        let started = Instant::now();
        let requests: Vec<_> = udids
            .chunks(PUSH_TARGETS_PER_REQUEST)
            .map(|chunk| {
                let (body, token) = (json!({ "targets": chunk }), token.to_owned());
                tokio::spawn(async move {
                    let (status, answer) = Client::new(addr).json(Method::POST, "/api/v1/push", Some(&token), Some(body)).await?;
                    if status != StatusCode::OK {
                        bail!("POST /api/v1/push: {status} {answer}");
                    }
                    Ok::<_, anyhow::Error>(answer)
                })
            })
            .collect();
        let answers = async {
            let mut out = Vec::new();
            for r in requests {
                out.push(r.await.map_err(anyhow::Error::from).and_then(|a| a));
            }
            out
        };
        let watch = async {
            while mock.count() < before + udids.len() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            started.elapsed()
        };
        let (answers, to_last_push) = tokio::join!(answers, async { tokio::time::timeout(Duration::from_secs(600), watch).await.ok() });
        let to_last_answer = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut stats = PushStats {
            targets: udids.len(),
            requests: answers.len(),
            delivered: 0,
            failed: 0,
            skipped: 0,
            received: mock.count() - before,
            secs_to_last_push: to_last_push.unwrap_or(to_last_answer).as_secs_f64(),
            secs_to_last_answer: to_last_answer.as_secs_f64(),
        };
        for a in answers {
            let a = a?;
            let n = |k: &str| a[k].as_u64().unwrap_or(0) as usize;
            stats.delivered += n("delivered");
            stats.failed += n("failed");
            stats.skipped += n("skipped");
        }
        Ok::<_, anyhow::Error>(stats)
    };
    let (mut phase, stats) = tokio::join!(idle, pushes);
    let stats = stats?;
    if stats.delivered != stats.targets {
        phase.errors += (stats.targets - stats.delivered) as u64;
        phase.first_error.get_or_insert(format!("{} of {} pushes not delivered", stats.targets - stats.delivered, stats.targets));
    }
    phase.pushes = Some(stats);
    Ok(phase)
}

/// Queue a `DeviceInformation` for every device through the API, then have each device fetch
/// and acknowledge it. Each device's answer is made and signed between the two, so that the
/// measured run does no signing (see the module doc).
async fn commands_run(
    ctx: &Ctx,
    devices: &Arc<Vec<BenchDevice>>,
    addr: SocketAddr,
    token: &str,
    concurrency: usize,
    rate: Option<f64>,
    monitor: &Monitor,
) -> Result<PhaseReport> {
    let mut api = Client::new(addr);
    let queued = Instant::now();
    let mut uuids = Vec::new();
    for chunk in devices.chunks(TARGETS_PER_REQUEST) {
        let body = json!({
            "targets": chunk.iter().map(|d| d.sim.udid.as_str()).collect::<Vec<_>>(),
            "command": {
                "request_type": "DeviceInformation",
                "Queries": lanyard::protocol::command::INVENTORY_QUERIES,
            },
        });
        let (status, answer) = api.json(Method::POST, "/api/v1/commands", Some(token), Some(body)).await?;
        if status != StatusCode::CREATED {
            bail!("POST /api/v1/commands: {status} {answer}");
        }
        let uuid = answer["command_uuid"].as_str().ok_or_else(|| anyhow!("no command_uuid in {answer}"))?;
        uuids.push(uuid.to_owned());
    }
    let enqueue_secs = queued.elapsed().as_secs_f64();
    let answers = Arc::new(signed_answers(devices, &uuids).await?);

    let mark = monitor.begin().await;
    let n = devices.len();
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for w in 0..concurrency.min(n) {
        let (devices, next, answers) = (devices.clone(), next.clone(), answers.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let mut tally = Tally::default();
            tokio::time::sleep_until(t0).await;
            for k in 0.. {
                // Closed loop: take the next device. Open loop: device i starts at t0 + i/rate.
                let (i, start) = match rate {
                    None => (next.fetch_add(1, Ordering::Relaxed), tokio::time::Instant::now()),
                    Some(r) => {
                        let i = w + k * concurrency;
                        let at = t0 + Duration::from_secs_f64(i as f64 / r);
                        if i < n {
                            tokio::time::sleep_until(at).await;
                        }
                        (i, at)
                    }
                };
                if i >= n {
                    break;
                }
                let d = &devices[i];
                match command_round_trip(&mut client, d, &answers[i], &mut tally, start).await {
                    Ok(()) => {
                        tally.commands += 1;
                        tally.round_trips_us.push(micros(start.elapsed()));
                    }
                    Err(e) => tally.error(format!("{}: {e:#}", d.sim.udid)),
                }
            }
            tally
        }));
    }
    let tally = join_tallies(tasks).await;
    let elapsed = t0.elapsed();
    let completed = tally.commands;
    let (mut round_trips, mut verified) = (tally.round_trips_us.clone(), 0u64);
    let mut phase = finish_phase("commands", rate, concurrency.min(n), tally, elapsed, monitor, mark).await;
    // Check the server's records, through the store (an API read of 10,000 results would
    // weigh on the server's peak RSS, which is measured).
    for uuid in uuids.iter() {
        let cmd = ctx.store.command(uuid).await?.ok_or_else(|| anyhow!("command {uuid} is not in the store"))?;
        verified += ctx.store.command_targets(cmd.seq).await?.iter().filter(|t| t.status == "acknowledged").count() as u64;
    }
    round_trips.sort_unstable();
    phase.commands = Some(CommandStats {
        completed,
        per_sec: completed as f64 / elapsed.as_secs_f64(),
        round_trip_p50_ms: percentile_ms(&round_trips, 0.50),
        round_trip_p99_ms: percentile_ms(&round_trips, 0.99),
        verified_acknowledged: verified,
        enqueue_secs,
    });
    if verified != n as u64 {
        phase.errors += n as u64 - verified.min(n as u64);
        phase.first_error.get_or_insert_with(|| format!("the store holds {verified} of {n} targets as acknowledged"));
    }
    Ok(phase)
}

/// A device's answer to the command queued for it: the command's UUID, the report and its
/// `Mdm-Signature`.
struct SignedAnswer {
    uuid: String,
    body: Bytes,
    signature: HeaderValue,
}

/// Each device's Acknowledged answer to the `DeviceInformation` queued for it (`uuids[k]` went
/// to the k-th chunk of devices), signed on all cores at once.
async fn signed_answers(devices: &Arc<Vec<BenchDevice>>, uuids: &[String]) -> Result<Vec<SignedAnswer>> {
    let n = devices.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = n.div_ceil(threads).max(1);
    let mut makers = Vec::new();
    for from in (0..n).step_by(per_thread) {
        let (devices, uuids) = (devices.clone(), uuids.to_vec());
        makers.push(tokio::task::spawn_blocking(move || -> Result<Vec<SignedAnswer>> {
            (from..(from + per_thread).min(n))
                .map(|i| {
                    let uuid = &uuids[i / TARGETS_PER_REQUEST];
                    let command = Command::DeviceInformation(DeviceInformation::inventory()).to_plist(uuid);
                    let sim = &devices[i].sim;
                    let (_, _, report) = sim.answer(&command).ok_or_else(|| anyhow!("the simulated device cannot answer {uuid}"))?;
                    let signature = header_value(sim.sign(&report))?;
                    Ok(SignedAnswer { uuid: uuid.clone(), body: report.into(), signature })
                })
                .collect()
        }));
    }
    let mut all = Vec::with_capacity(n);
    for m in makers {
        all.extend(m.await??);
    }
    Ok(all)
}

/// Idle -> the command -> Acknowledged -> empty. Each request's latency goes into the tally.
async fn command_round_trip(
    client: &mut Client,
    d: &BenchDevice,
    answer: &SignedAnswer,
    tally: &mut Tally,
    start: tokio::time::Instant,
) -> Result<()> {
    let (status, command) = client.device("/mdm/connect", d.idle_body.clone(), d.idle_sig.clone()).await?;
    tally.latencies_us.push(micros(start.elapsed()));
    if status != StatusCode::OK || command.is_empty() {
        bail!("Idle: expected a command, got {status} {}", lossy(&command));
    }
    tally.requests += 1;
    let (uuid, request_type, _) = SimDevice::read_command(&command).ok_or_else(|| anyhow!("not a command: {}", lossy(&command)))?;
    if uuid != answer.uuid || request_type != "DeviceInformation" {
        bail!("got {request_type} {uuid}, expected the DeviceInformation {} this run queued for the device", answer.uuid);
    }
    let sent = tokio::time::Instant::now();
    let (status, next) = client.device("/mdm/connect", answer.body.clone(), answer.signature.clone()).await?;
    tally.latencies_us.push(micros(sent.elapsed()));
    if status != StatusCode::OK || !next.is_empty() {
        bail!("Acknowledged: expected an empty answer, got {status} {}", lossy(&next));
    }
    tally.requests += 1;
    Ok(())
}

async fn join_tallies(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for t in tasks {
        match t.await {
            Ok(t) => all.merge(t),
            Err(e) => all.error(format!("load generator task failed: {e}")),
        }
    }
    all
}

async fn finish_phase(
    name: &'static str,
    rate: Option<f64>,
    concurrency: usize,
    mut tally: Tally,
    elapsed: Duration,
    monitor: &Monitor,
    mark: Mark,
) -> PhaseReport {
    let u = monitor.end(mark).await;
    let per_request = |cpu: f64| cpu * 1e6 / tally.requests.max(1) as f64;
    tally.latencies_us.sort_unstable();
    let l = &tally.latencies_us;
    PhaseReport {
        name,
        offered_rate: rate,
        concurrency,
        requests: tally.requests,
        errors: tally.errors,
        unsent: tally.unsent,
        elapsed,
        requests_per_sec: tally.requests as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(l, 0.50),
        p99_ms: percentile_ms(l, 0.99),
        max_ms: l.last().map(|&v| v as f64 / 1000.0).unwrap_or(0.0),
        commands: None,
        pushes: None,
        enrolment: None,
        server_cpu_cores: u.server_cpu / u.wall,
        server_cpu_us_per_request: per_request(u.server_cpu),
        database_cpu_cores: u.database_cpu.map(|c| c / u.wall),
        database_cpu_us_per_request: u.database_cpu.map(per_request),
        bench_cpu_cores: u.bench_cpu / u.wall,
        other_cpu_cores: ((u.machine_busy - u.server_cpu - u.bench_cpu - u.database_cpu.unwrap_or(0.0)) / u.wall).max(0.0),
        server_rss_max_kb: u.server_rss_max_kb,
        first_error: tally.first_error,
    }
}

/// The `p` quantile (nearest rank) of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

async fn login(addr: SocketAddr) -> Result<String> {
    let (status, body) = Client::new(addr)
        .json(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "admin", "password": ADMIN_PASSWORD})))
        .await?;
    if status != StatusCode::OK {
        bail!("admin login: {status} {body}");
    }
    Ok(body["token"].as_str().ok_or_else(|| anyhow!("no token in {body}"))?.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Printing

impl PhaseReport {
    fn title(&self) -> String {
        match self.offered_rate {
            None => format!("{} (max)", self.name),
            Some(r) => format!("{} (at {r:.0}/s)", self.name),
        }
    }

    /// One line, e.g. `idle (max): 256 concurrent, 60000 requests in 20.0 s, 3000 req/s, ...`.
    pub fn line(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.pushes {
            s += &format!(
                "{:<18} {} devices in {} requests at once: the mock APNs accepted {} pushes, the last {:.2} s after the first request \
                 ({:.0} pushes/s); last answer after {:.2} s: {} delivered, {} failed, {} skipped\n",
                "push (server):",
                p.targets,
                p.requests,
                p.received,
                p.secs_to_last_push,
                p.received as f64 / p.secs_to_last_push.max(1e-9),
                p.secs_to_last_answer,
                p.delivered,
                p.failed,
                p.skipped,
            );
        }
        s += &format!("{:<18} {} concurrent, ", self.title() + ":", self.concurrency);
        if let Some(c) = &self.commands {
            s += &format!(
                "{} commands delivered and acknowledged in {:.1} s, {:.0} commands/s ({:.0} req/s), round trip p50 {:.1} ms, p99 {:.1} ms; per request ",
                c.completed,
                self.elapsed.as_secs_f64(),
                c.per_sec,
                self.requests_per_sec,
                c.round_trip_p50_ms,
                c.round_trip_p99_ms,
            );
        } else {
            s += &format!("{} requests in {:.1} s, {:.0} req/s, ", self.requests, self.elapsed.as_secs_f64(), self.requests_per_sec);
        }
        s += &format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; errors {}", self.p50_ms, self.p99_ms, self.max_ms, self.errors);
        if self.unsent > 0 {
            s += &format!(", {} not sent (server behind schedule)", self.unsent);
        }
        s += &format!("; server CPU {:.2} cores ({:.0} us per request)", self.server_cpu_cores, self.server_cpu_us_per_request,);
        if let (Some(c), Some(us)) = (self.database_cpu_cores, self.database_cpu_us_per_request) {
            s += &format!(", PostgreSQL {c:.2} cores ({us:.0} us per request)");
        }
        s += &format!(
            ", load generator {:.2} cores, other processes {:.2} cores, server RSS max {}",
            self.bench_cpu_cores,
            self.other_cpu_cores,
            mb(self.server_rss_max_kb)
        );
        if let Some(c) = &self.commands {
            s += &format!("; queued by the API in {:.2} s, {} acknowledged in the store", c.enqueue_secs, c.verified_acknowledged);
        }
        if let Some(e) = &self.enrolment {
            s += &format!("\n{}", e.lines(self));
        }
        if let Some(e) = &self.first_error {
            s += &format!("\n    first error: {e}");
        }
        s
    }
}

fn mb(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lanyard bench: {}, {} devices with real certificates ({} keys) enrolled over HTTP, {} enrolled in all, {} concurrent connections",
            self.backend, self.devices, self.device_key, self.enrolled, self.concurrency
        )?;
        writeln!(f, "machine: {} CPUs, load average {} before the runs, {} after", self.cpus, self.load_before, self.load_after)?;
        if self.enrolled > self.devices {
            writeln!(
                f,
                "{:<18} {} devices written through the store in {:.1} s",
                "enrol (store):",
                self.enrolled - self.devices,
                self.store_enrol_secs
            )?;
        }
        let enrol_only = self.phases.iter().any(|p| p.enrolment.is_some());
        writeln!(
            f,
            "{:<18} {} devices in {:.1} s ({:.0} devices/s; {})",
            "enrol (HTTP):",
            self.devices,
            self.http_enrol_secs,
            self.devices as f64 / self.http_enrol_secs,
            if enrol_only { "SCEP, Authenticate, TokenUpdate each" } else { "Authenticate, TokenUpdate, 3 inventory commands each" }
        )?;
        for p in &self.phases {
            writeln!(f, "{}", p.line())?;
        }
        write!(f, "server peak RSS (VmHWM, whole run): {}; at the end {}", mb(self.server_peak_rss_kb), mb(self.server_rss_end_kb))?;
        if let Some(d) = &self.kept_dir {
            write!(f, "\nkept: {} (server.log inside)", d.display())?;
        }
        if self.phases.iter().any(|p| p.offered_rate.is_none()) {
            write!(
                f,
                "\n(max runs are closed loops: every connection always has a request in flight, so their latency is queueing, about connections / throughput)"
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client: hyper over one keep-alive connection, reconnecting when the server closes it.

struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    tx: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, host: HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header"), tx: None }
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        if self.tx.as_ref().is_none_or(|t| t.is_closed()) {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (tx, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.tx = Some(tx);
        }
        let tx = self.tx.as_mut().expect("connected above");
        let sent = async {
            tx.ready().await?;
            let resp = tx.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        if sent.is_err() {
            self.tx = None;
        }
        sent
    }

    /// A signed device request (`/mdm/checkin` or `/mdm/connect`).
    async fn device(&mut self, path: &'static str, body: Bytes, signature: HeaderValue) -> Result<(StatusCode, Bytes)> {
        let req = Request::builder()
            .method(Method::PUT)
            .uri(path)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/x-apple-aspen-mdm")
            .header("mdm-signature", signature)
            .body(Full::new(body))?;
        self.send(req).await
    }

    async fn json(&mut self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Result<(StatusCode, Value)> {
        let mut req = Request::builder().method(method).uri(path).header(header::HOST, self.host.clone());
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&b)?)
            }
            None => Bytes::new(),
        };
        let (status, bytes) = self.send(req.body(Full::new(body))?).await?;
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(lossy(&bytes)));
        Ok((status, v))
    }
}

fn header_value(s: String) -> Result<HeaderValue> {
    Ok(HeaderValue::try_from(s)?)
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(300).collect()
}

// ---------------------------------------------------------------------------------------------
// The server process, and what /proc says about it.

struct ServerProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProcess {
    fn start(exe: &Path, dir: &Path, env: &BTreeMap<String, String>, log_filter: Option<&str>) -> Result<ServerProcess> {
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("serve").current_dir(dir).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LANYARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env);
        if let Some(f) = log_filter {
            cmd.env("LANYARD_LOG", f);
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {} serve", exe.display()))?;
        Ok(ServerProcess { child: Some(child), log })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    async fn wait_ready(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut client = Client::new(addr);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the server exited ({status}) before it answered\n{}", self.log_tail());
            }
            if let Ok((StatusCode::OK, _)) = client.json(Method::GET, "/healthz", None, None).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /healthz within 60 s\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("server log ({}), last lines:\n{}", self.log.display(), lines[lines.len().saturating_sub(20)..].join("\n"))
    }

    /// SIGTERM, and SIGKILL if it has not drained in 10 seconds.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Samples the server's VmRSS every 100 ms and reads the CPU time of the server, of this
/// process and, on PostgreSQL, of the database's backends serving the bench database (they
/// share the machine, so their CPU is part of the cost of a request).
struct Monitor {
    pid: u32,
    max_rss_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    postgres: Option<sqlx::PgPool>,
}

/// Where a run started.
struct Mark {
    at: Instant,
    server_cpu: f64,
    bench_cpu: f64,
    backends_cpu: BTreeMap<u32, f64>,
    machine_busy: f64,
}

/// What a run cost.
struct Usage {
    wall: f64,
    server_cpu: f64,
    bench_cpu: f64,
    /// PostgreSQL only.
    database_cpu: Option<f64>,
    /// Every process on the machine, this run's included.
    machine_busy: f64,
    server_rss_max_kb: u64,
}

impl Monitor {
    async fn start(pid: u32, database_url: &str) -> Result<Monitor> {
        let max_rss_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max_rss_kb.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = proc_status_kb(pid, "VmRSS") {
                    m.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let postgres = if database_url.starts_with("postgres") {
            Some(sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(database_url).await?)
        } else {
            None
        };
        Ok(Monitor { pid, max_rss_kb, stop, postgres })
    }

    /// CPU seconds of each PostgreSQL backend connected to the bench database (not this one).
    async fn backends_cpu(&self) -> BTreeMap<u32, f64> {
        let Some(pool) = &self.postgres else {
            return BTreeMap::new();
        };
        let pids: Vec<(i32,)> =
            sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
                .fetch_all(pool)
                .await
                .unwrap_or_default();
        pids.into_iter().map(|(pid,)| (pid as u32, proc_cpu_secs(&format!("/proc/{pid}/stat")))).collect()
    }

    async fn begin(&self) -> Mark {
        self.max_rss_kb.store(proc_status_kb(self.pid, "VmRSS").unwrap_or(0), Ordering::Relaxed);
        Mark {
            backends_cpu: self.backends_cpu().await,
            at: Instant::now(),
            server_cpu: proc_cpu_secs(&format!("/proc/{}/stat", self.pid)),
            bench_cpu: proc_cpu_secs("/proc/self/stat"),
            machine_busy: machine_busy_secs(),
        }
    }

    async fn end(&self, mark: Mark) -> Usage {
        let wall = mark.at.elapsed().as_secs_f64().max(1e-9);
        let server_cpu = proc_cpu_secs(&format!("/proc/{}/stat", self.pid)) - mark.server_cpu;
        let bench_cpu = proc_cpu_secs("/proc/self/stat") - mark.bench_cpu;
        let server_rss_max_kb = self.max_rss_kb.load(Ordering::Relaxed).max(proc_status_kb(self.pid, "VmRSS").unwrap_or(0));
        let database_cpu = match &self.postgres {
            None => None,
            Some(_) => {
                Some(self.backends_cpu().await.iter().map(|(pid, cpu)| cpu - mark.backends_cpu.get(pid).copied().unwrap_or(0.0)).sum())
            }
        };
        Usage { wall, server_cpu, bench_cpu, database_cpu, machine_busy: machine_busy_secs() - mark.machine_busy, server_rss_max_kb }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// CPU seconds every CPU of the machine has spent busy since boot (`/proc/stat`: all but idle
/// and iowait).
fn machine_busy_secs() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = text.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return 0.0;
    };
    let f: Vec<f64> = cpu.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let busy: f64 = f.iter().take(8).sum::<f64>() - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0);
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// A `kB` line of `/proc/<pid>/status`, e.g. VmRSS or VmHWM.
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// User + system CPU seconds from a `/proc/.../stat` file (0 if unreadable).
fn proc_cpu_secs(path: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A temporary directory, removed at the end unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(keep: bool) -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("lanyard-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A progress line on stderr every two seconds.
struct Progress {
    stop: Arc<AtomicBool>,
}

impl Progress {
    fn start(what: &'static str, total: usize, done: Arc<AtomicUsize>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let d = done.load(Ordering::Relaxed).min(total);
                eprintln!("{what}: {d}/{total} ({:.0}/s)", d as f64 / started.elapsed().as_secs_f64());
            }
        });
        Progress { stop }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.50), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v, 1.0), 100.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
        assert_eq!(percentile_ms(&[7000], 0.99), 7.0);
    }

    #[test]
    fn reads_its_own_proc_files() {
        let pid = std::process::id();
        assert!(proc_status_kb(pid, "VmRSS").unwrap() > 0);
        assert!(proc_status_kb(pid, "VmHWM").unwrap() > 0);
        assert!(proc_cpu_secs("/proc/self/stat") >= 0.0);
    }
}
