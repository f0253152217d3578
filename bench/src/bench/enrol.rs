//! `lanyard bench enrol`: enrolments as an iPad makes them, and where their time goes.
//!
//! Each simulated device does what the enrolment profile's SCEP and MDM payloads have an iPad
//! do: `POST /scep?operation=PKIOperation` with a PKCSReq carrying the enrolment token as its
//! challenge, reads its identity certificate out of the CertRep (verifying the CA's signature and
//! decrypting the envelope with its key), then `Authenticate` and `TokenUpdate` on the check-in
//! URL, signed with that identity. An enrolment counts when the TokenUpdate is answered 200;
//! afterwards the store is checked to hold every device as enrolled.
//!
//! The load generator runs on the same machine as the server, and a device's RSA work is as
//! heavy as the CA's, so the run measures both sides separately:
//!
//! - the client's steps, in CPU time of the thread doing them: key generation (devices share a
//!   few keys, made before the run, as in the other scenarios), building the PKCSReq (CSR,
//!   challenge, self-signed certificate, CMS signature, envelope; done before the run, like the
//!   pre-signed Idle bodies of the other scenarios), reading the CertRep, and signing
//!   Authenticate and TokenUpdate;
//! - the server's CPU (and PostgreSQL's) per enrolment, from `/proc`. Dividing this machine's
//!   cores by it gives the enrolments a second the server could answer with the machine to
//!   itself: the server-side figure. The end-to-end rate is lower because the devices' half of
//!   the cryptography runs on the same cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use openssl::x509::X509;

use super::{Client, DeviceKeys, Monitor, PhaseReport, TOPIC, Tally, finish_phase, header_value, lossy};
use crate::sim::{Kind, SimDevice};
use lanyard::context::Ctx;
use lanyard::protocol::scep::MessageType;
use lanyard::protocol::scep::client::{BuiltMessage, Requester};
use lanyard::store::DeviceFilter;

/// What an enrol run measured beyond the usual phase figures.
#[derive(Debug, Clone)]
pub struct EnrolStats {
    /// Devices enrolled (TokenUpdate answered 200).
    pub enrolled: u64,
    /// Devices the store holds as enrolled afterwards.
    pub verified_enrolled: u64,
    /// The client's CPU per device, in milliseconds, by step.
    pub key_generation_ms: f64,
    pub shared_keys: usize,
    pub request_ms: f64,
    pub cert_rep_ms: f64,
    pub signing_ms: f64,
    /// Seconds the PKCSReqs took to build, before the run (on every core).
    pub prepare_secs: f64,
    /// CPUs of this machine.
    pub cpus: usize,
}

/// CPU seconds the calling thread has used.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given and has no other effect.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Runs `f` and returns its result with the CPU seconds it took on this thread.
fn cpu_timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = thread_cpu_secs();
    let out = f();
    (out, thread_cpu_secs() - start)
}

/// One device, ready to enrol: its key, its requester and the PKCSReq it will send.
struct Prepared {
    key: PKey<Private>,
    requester: Requester,
    request: BuiltMessage,
}

/// The CA certificate, as a device gets it: `GET /scep?operation=GetCACert`.
async fn ca_certificate(addr: SocketAddr) -> Result<X509> {
    let mut client = Client::new(addr);
    let req = Request::builder()
        .method(Method::GET)
        .uri("/scep?operation=GetCACert")
        .header(header::HOST, client.host.clone())
        .body(Full::new(Bytes::new()))?;
    let (status, body) = client.send(req).await?;
    if status != StatusCode::OK {
        bail!("GetCACert: {status} {}", lossy(&body));
    }
    Ok(X509::from_der(&body).context("GetCACert did not answer one DER certificate")?)
}

/// Build `n` PKCSReqs on every core; returns them with the CPU seconds per device it took.
async fn prepare(keys: &Arc<DeviceKeys>, ca: &X509, challenge: &str, n: usize) -> Result<(Vec<Prepared>, f64)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let mut makers = Vec::new();
    for t in 0..threads {
        let count = n / threads + usize::from(t < n % threads);
        let (keys, ca, challenge) = (keys.clone(), ca.clone(), challenge.to_owned());
        makers.push(tokio::task::spawn_blocking(move || -> Result<(Vec<Prepared>, f64)> {
            let mut out = Vec::with_capacity(count);
            let mut cpu = 0.0;
            for i in 0..count {
                let key = keys.key()?;
                let (built, secs) = cpu_timed(|| -> Result<(Requester, BuiltMessage)> {
                    let requester = Requester::new(key.clone(), &format!("Lanyard bench device {t}-{i}"), &challenge)?;
                    let request = requester.pkcs_req(&ca, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq)?;
                    Ok((requester, request))
                });
                let (requester, request) = built?;
                cpu += secs;
                out.push(Prepared { key, requester, request });
            }
            Ok((out, cpu))
        }));
    }
    let (mut all, mut cpu) = (Vec::with_capacity(n), 0.0);
    for m in makers {
        let (some, secs) = m.await??;
        all.extend(some);
        cpu += secs;
    }
    Ok((all, cpu / n.max(1) as f64))
}

/// CPU milliseconds one RSA-2048 key takes to make (the median of three).
fn key_generation_ms() -> f64 {
    let mut times: Vec<f64> = (0..3).map(|_| cpu_timed(|| openssl::rsa::Rsa::generate(2048)).1 * 1000.0).collect();
    times.sort_by(f64::total_cmp);
    times[1]
}

/// Client CPU spent in the measured run, in microseconds, summed over devices.
#[derive(Default)]
struct ClientCpu {
    cert_rep_us: AtomicU64,
    signing_us: AtomicU64,
}

/// Enrol one prepared device over `client`; returns (CertRep CPU, signing CPU) in seconds.
async fn enrol_one(client: &mut Client, d: Prepared) -> Result<(f64, f64)> {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/scep?operation=PKIOperation")
        .header(header::HOST, client.host.clone())
        .header(header::CONTENT_TYPE, "application/x-pki-message")
        .body(Full::new(Bytes::from(d.request.der)))?;
    let (status, rep) = client.send(req).await?;
    if status != StatusCode::OK {
        bail!("PKIOperation: {status} {}", lossy(&rep));
    }
    let (cert, cert_rep_secs) = cpu_timed(|| d.requester.issued_certificate(&rep));
    let cert = cert.map_err(|e| anyhow!("the CertRep: {e}"))?;
    let sim = SimDevice::new(Kind::SupervisedIpad, TOPIC, cert, d.key);
    let mut signing_secs = 0.0;
    for body in [sim.authenticate(), sim.token_update()] {
        let (sig, secs) = cpu_timed(|| sim.sign(&body));
        signing_secs += secs;
        let (status, answer) = client.device("/mdm/checkin", body.into(), header_value(sig)?).await?;
        if status != StatusCode::OK {
            bail!("check-in of {}: {status} {}", sim.udid, lossy(&answer));
        }
    }
    Ok((cert_rep_secs, signing_secs))
}

/// The measured run: enrol `n` devices over `concurrency` connections.
pub(super) async fn run(
    ctx: &Ctx,
    keys: &Arc<DeviceKeys>,
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    monitor: &Monitor,
) -> Result<PhaseReport> {
    let actor = lanyard::services::auth::Actor { name: "bench".into(), ip: None };
    let max_uses = i64::try_from(n).context("too many devices")?;
    let token = ctx
        .enrollment
        .create_enrollment_token(&actor, "lanyard bench", Some(max_uses), Some(24), None)
        .await
        .map_err(|e| anyhow!("creating the enrolment token: {e}"))?;
    let ca = ca_certificate(addr).await?;
    eprintln!("preparing {n} SCEP requests (CSR with the challenge, self-signed certificate, CMS signature, envelope)");
    let key_generation_ms = key_generation_ms();
    let started = Instant::now();
    let (prepared, request_cpu) = prepare(keys, &ca, &token.token, n).await?;
    let prepare_secs = started.elapsed().as_secs_f64();

    let queue = Arc::new(std::sync::Mutex::new(prepared));
    let cpu = Arc::new(ClientCpu::default());
    let done = Arc::new(AtomicUsize::new(0));
    let progress = super::Progress::start("enrolling (SCEP, Authenticate, TokenUpdate)", n, done.clone());
    let mark = monitor.begin().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(n).max(1) {
        let (queue, cpu, done) = (queue.clone(), cpu.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let mut tally = Tally::default();
            loop {
                let Some(d) = queue.lock().map_err(|_| anyhow!("queue poisoned"))?.pop() else { break };
                let sent = Instant::now();
                match enrol_one(&mut client, d).await {
                    Ok((cert_rep, signing)) => {
                        tally.requests += 1;
                        tally.latencies_us.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                        cpu.cert_rep_us.fetch_add((cert_rep * 1e6) as u64, Ordering::Relaxed);
                        cpu.signing_us.fetch_add((signing * 1e6) as u64, Ordering::Relaxed);
                    }
                    Err(e) => tally.error(format!("{e:#}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(tally)
        }));
    }
    let mut tally = Tally::default();
    for t in tasks {
        match t.await {
            Ok(Ok(t)) => tally.merge(t),
            Ok(Err(e)) => tally.error(format!("{e:#}")),
            Err(e) => tally.error(format!("load generator task failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    progress.finish();
    let enrolled = tally.requests;
    let mut p = finish_phase("enrol", None, concurrency, tally, elapsed, monitor, mark).await;
    let verified_enrolled = count_enrolled(ctx).await?;
    let per_device_ms = |us: &AtomicU64| us.load(Ordering::Relaxed) as f64 / 1000.0 / enrolled.max(1) as f64;
    p.enrolment = Some(EnrolStats {
        enrolled,
        verified_enrolled,
        key_generation_ms,
        shared_keys: keys.shared(),
        request_ms: request_cpu * 1000.0,
        cert_rep_ms: per_device_ms(&cpu.cert_rep_us),
        signing_ms: per_device_ms(&cpu.signing_us),
        prepare_secs,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    if verified_enrolled != enrolled {
        p.errors += 1;
        p.first_error.get_or_insert(format!("{enrolled} enrolments answered 200 but the store holds {verified_enrolled} devices enrolled"));
    }
    Ok(p)
}

/// Devices the store holds as enrolled.
async fn count_enrolled(ctx: &Ctx) -> Result<u64> {
    let mut filter = DeviceFilter { enrolled: Some(true), limit: 1000, ..Default::default() };
    let mut count = 0u64;
    loop {
        let page = ctx.store.list_devices(&filter).await?;
        count += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == filter.limit as usize => filter.after_udid = Some(last.udid.clone()),
            _ => return Ok(count),
        }
    }
}

impl EnrolStats {
    /// The breakdown printed under the phase's line.
    pub(super) fn lines(&self, p: &PhaseReport) -> String {
        let server_ms = (p.server_cpu_us_per_request + p.database_cpu_us_per_request.unwrap_or(0.0)) / 1000.0;
        let client_ms = self.cert_rep_ms + self.signing_ms;
        let capacity = self.cpus as f64 * 1000.0 / server_ms.max(1e-9);
        let mut s = format!(
            "    {} enrolled, {} enrolled in the store; server CPU {:.2} ms per enrolment{} → server-side {:.0} enrolments/s on this machine's {} cores\n",
            self.enrolled,
            self.verified_enrolled,
            p.server_cpu_us_per_request / 1000.0,
            match p.database_cpu_us_per_request {
                Some(us) => format!(" + PostgreSQL {:.2} ms", us / 1000.0),
                None => String::new(),
            },
            capacity,
            self.cpus,
        );
        s += &format!(
            "    devices' CPU per enrolment: key generation {:.1} ms (before the run; {} devices share {} keys), SCEP request {:.2} ms (before the run, {:.1} s in all), \
             reading the CertRep {:.2} ms, signing Authenticate and TokenUpdate {:.2} ms\n",
            self.key_generation_ms, self.enrolled, self.shared_keys, self.request_ms, self.prepare_secs, self.cert_rep_ms, self.signing_ms,
        );
        s += &format!(
            "    in the measured run the server's share of the CPU per enrolment is {:.0} % (server {:.2} ms, devices {:.2} ms)",
            100.0 * server_ms / (server_ms + client_ms).max(1e-9),
            server_ms,
            client_ms,
        );
        s
    }
}
