//! Waking devices: pushing through APNs, recording what APNs answered, and the sweeper that
//! makes sure no command silently stalls (re-pushes quiet devices, expires old commands).

pub mod certificate;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;

use crate::apple::{ApnsClient, PushOutcome};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::services::push::certificate::RENEWAL_STEPS;
use crate::store::DynStore;
use crate::store::PushTarget;
use std::sync::Arc;

/// Waking devices through APNs, and the push certificate.
#[derive(Clone)]
pub struct Push {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Arc<crate::config::Config>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) pki: Arc<crate::pki::Pki>,
    pub(crate) pusher: Arc<Pusher>,
    pub(crate) audit: crate::services::audit::Audit,
}

/// Streams in flight at once when pushing a batch.
const PUSH_CONCURRENCY: usize = 500;
/// At most this many devices re-pushed, and commands expired, per sweeper tick.
pub const SWEEP_BATCH: i64 = 500;
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The APNs client for the current push certificate, rebuilt when the certificate changes.
pub struct Pusher {
    client: Mutex<Option<(String, ApnsClient)>>,
    /// One batch of pushes on the wire at a time, however many callers: a push to the whole
    /// school goes out batch by batch, so devices checking in meanwhile (and a technician's
    /// single push) wait for one batch at most, not behind thousands of queued streams.
    sending: tokio::sync::Semaphore,
    /// The loaded certificate's topic, as every Authenticate and TokenUpdate checks it, and
    /// when it was read: see [`Push::served_topic`].
    topic: std::sync::Mutex<Option<(Instant, Option<String>)>>,
}

impl Default for Pusher {
    fn default() -> Self {
        Pusher { client: Mutex::new(None), sending: tokio::sync::Semaphore::new(1), topic: std::sync::Mutex::new(None) }
    }
}

/// How long a check-in may rely on the push topic read before: a certificate for another topic
/// (which makes every device enrol again) loaded on another instance is in force here within
/// this; on this instance at once.
const TOPIC_TTL: Duration = Duration::from_secs(2);

impl Pusher {
    /// Forget the cached topic: a certificate was just loaded.
    pub fn forget_topic(&self) {
        *self.topic.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Devices per batch (see [`Pusher::sending`]).
const PUSH_BATCH: usize = 2_000;

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PushSummary {
    /// Devices asked for.
    pub requested: usize,
    /// Devices with no usable push token (not enrolled, or APNs said 410).
    pub skipped: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Outcome label -> count.
    /// delivered, bad_request:<reason>, certificate_problem:<reason>, unregistered, retry_later:<status>, connection_failed
    pub outcomes: BTreeMap<String, usize>,
}

/// A short, stable label for an outcome (metrics, the device record).
fn label(o: &PushOutcome) -> String {
    match o {
        PushOutcome::Delivered { .. } => "delivered".into(),
        PushOutcome::BadRequest { reason } => format!("bad_request:{reason}"),
        PushOutcome::CertificateProblem { reason, .. } => format!("certificate_problem:{reason}"),
        PushOutcome::Unregistered { .. } => "unregistered".into(),
        PushOutcome::RetryLater { status, .. } => format!("retry_later:{status}"),
        PushOutcome::ConnectionFailed { .. } => "connection_failed".into(),
    }
}

impl Push {
    /// The push topic this server serves (None before a push certificate is loaded), read from
    /// the store at most every [`TOPIC_TTL`]: an enrolment checks it twice, and it changes only
    /// when an admin loads a certificate for another topic.
    pub async fn served_topic(&self) -> Result<Option<String>> {
        if let Some((read, topic)) = self.pusher.topic.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && read.elapsed() < TOPIC_TTL
        {
            return Ok(topic.clone());
        }
        let topic = self.store.push_cert().await?.map(|c| c.topic);
        *self.pusher.topic.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), topic.clone()));
        Ok(topic)
    }

    /// The client for the loaded push certificate; a clear error when there is none or it expired.
    async fn apns_client(&self) -> Result<ApnsClient> {
        let rec = self.store.push_cert().await?.ok_or_else(|| {
            Error::Unavailable("no push certificate is loaded, so devices cannot be woken: load it with `lanyard push-cert import` or PUT /api/v1/push-cert".into())
        })?;
        if rec.not_after <= self.clock.now() {
            return Err(Error::Unavailable(format!("the MDM push certificate expired on {}: {RENEWAL_STEPS}", rec.not_after.date_naive())));
        }
        let fingerprint = hex::encode(openssl::sha::sha256(rec.cert_pem.as_bytes()));
        let mut cached = self.pusher.client.lock().await;
        if let Some((fp, client)) = cached.as_ref() {
            if *fp == fingerprint {
                return Ok(client.clone());
            }
        }
        let cert = self.push_certificate().await?.ok_or_else(|| Error::Unavailable("no push certificate".into()))?;
        let extra_ca = match &self.config.apns_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| Error::internal(anyhow::anyhow!("apns_ca_file {}: {e}", path.display())))?),
            None => None,
        };
        let client = ApnsClient::new(&self.config.apns_url, &cert, extra_ca.as_deref())
            .map_err(|e| Error::internal(anyhow::anyhow!("APNs client: {e}")))?;
        *cached = Some((fingerprint, client.clone()));
        Ok(client)
    }

    /// Push these devices now (those that can be pushed).
    pub async fn push_devices(&self, udids: &[String]) -> Result<PushSummary> {
        let targets = self.store.push_targets(udids).await?;
        let skipped = udids.len() - targets.len();
        if targets.is_empty() {
            return Ok(PushSummary { requested: udids.len(), skipped, ..Default::default() });
        }
        let client = self.apns_client().await?;
        let mut summary = self.send_pushes(&client, targets, true).await?;
        summary.requested = udids.len();
        summary.skipped = skipped;
        Ok(summary)
    }

    /// Send to `targets` batch by batch, and record each answer. With `mark`, each batch is
    /// marked as pushed just before it goes out (the sweeper's targets are marked when claimed).
    ///
    /// The batches are a pipeline: marking a batch and recording its answers happen outside the
    /// turn on the wire, so while one caller's batch is being sent another's is being written, and
    /// a push to the whole school never holds the database for more than one batch's statements.
    async fn send_pushes(&self, client: &ApnsClient, targets: Vec<PushTarget>, mark: bool) -> Result<PushSummary> {
        let mut summary = PushSummary::default();
        let mut cert_problem = None;
        let mut items = targets.into_iter();
        loop {
            let batch: Vec<PushTarget> = items.by_ref().take(PUSH_BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let udids: Vec<String> = batch.iter().map(|t| t.udid.clone()).collect();
            if mark {
                self.store.mark_pushed(&udids, self.clock.now()).await?;
            }
            let wire: Vec<(Vec<u8>, String)> = batch.into_iter().map(|t| (t.push_token, t.push_magic)).collect();
            let outcomes = {
                let _turn = self.pusher.sending.acquire().await.map_err(Error::internal)?;
                let started = Instant::now();
                let outcomes = client.push_many(wire, PUSH_CONCURRENCY).await;
                self.metrics.observe_push_latency(started.elapsed());
                outcomes
            };
            if let Some(p) = self.record_push_outcomes(udids, &outcomes, &mut summary).await? {
                cert_problem = Some(p);
            }
        }
        let now = self.clock.now();
        match cert_problem {
            Some(p) => {
                tracing::error!("{p}");
                self.store.set_push_cert_error(Some(&p), now).await?;
            }
            None if summary.delivered > 0 => self.store.set_push_cert_error(None, now).await?,
            None => {}
        }
        Ok(summary)
    }

    /// Store what APNs answered for one batch and add it to `summary`; a certificate problem, if
    /// APNs reported one.
    async fn record_push_outcomes(
        &self,
        udids: Vec<String>,
        outcomes: &[PushOutcome],
        summary: &mut PushSummary,
    ) -> Result<Option<String>> {
        let mut groups: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
        let mut cert_problem = None;
        for (udid, o) in udids.into_iter().zip(outcomes) {
            let l = label(o);
            match o {
                PushOutcome::BadRequest { reason } => tracing::warn!(udid, reason, "APNs refused a push"),
                PushOutcome::CertificateProblem { status, reason } => {
                    cert_problem = Some(format!("APNs answered {status} {reason}: the push certificate is not accepted"));
                }
                PushOutcome::Unregistered { .. } => {
                    tracing::info!(udid, "APNs: push token no longer valid (410); not pushing it until the next TokenUpdate")
                }
                PushOutcome::ConnectionFailed { error } => tracing::warn!(udid, error, "cannot reach APNs"),
                _ => {}
            }
            // Only 410 retires a token; a 400 BadDeviceToken is usually a sandbox/production
            // mix-up, which a technician fixes without the device re-enrolling.
            let dead = matches!(o, PushOutcome::Unregistered { .. });
            let entry = groups.entry(l).or_insert_with(|| (Vec::new(), dead));
            entry.0.push(udid);
        }
        let now = self.clock.now();
        for (l, (devices, dead)) in &groups {
            self.store.record_push_outcome(devices, l, *dead, now).await?;
            self.metrics.count_push(l.split(':').next().unwrap_or(l), devices.len() as u64);
            *summary.outcomes.entry(l.clone()).or_default() += devices.len();
            if l == "delivered" {
                summary.delivered += devices.len();
            } else {
                summary.failed += devices.len();
            }
        }
        Ok(cert_problem)
    }

    /// One sweeper tick: expire what is past its time, re-push quiet devices. Bounded work.
    pub async fn sweep_once(&self) -> Result<SweepReport> {
        let now = self.clock.now();
        let expired = self.store.expire_due(now, SWEEP_BATCH).await?;
        Metrics::add(&self.metrics.commands_expired, expired);
        let mut report = SweepReport { expired, ..Default::default() };
        let client = match self.apns_client().await {
            Ok(c) => c,
            Err(e) => {
                report.push_error = Some(e.to_string());
                return Ok(report);
            }
        };
        let due = self.store.claim_repush(now, SWEEP_BATCH).await?;
        report.repushed = due.len();
        if !due.is_empty() {
            let s = self.send_pushes(&client, due, false).await?;
            report.delivered = s.delivered;
        }
        Ok(report)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    pub expired: u64,
    pub repushed: usize,
    pub delivered: usize,
    pub push_error: Option<String>,
}
