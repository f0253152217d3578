//! Prometheus metrics at `/metrics`: counters kept by this instance, and gauges read from the
//! database at scrape time (so every instance behind a load balancer reports the same queue).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::context::Ctx;

const LATENCY_BUCKETS: [f64; 9] = [0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

#[derive(Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    pushes: Mutex<BTreeMap<String, u64>>,
    push_latency: Mutex<Histogram>,
    pub commands_queued: AtomicU64,
    pub commands_delivered: AtomicU64,
    pub commands_acknowledged: AtomicU64,
    pub commands_errored: AtomicU64,
    pub commands_not_now: AtomicU64,
    pub commands_expired: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn count_push(&self, outcome: &str, n: u64) {
        *self.pushes.lock().unwrap_or_else(|p| p.into_inner()).entry(outcome.to_owned()).or_default() += n;
    }

    pub fn observe_push_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let mut h = self.push_latency.lock().unwrap_or_else(|p| p.into_inner());
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn count_http(&self, method: &str, route: &str, status: u16) {
        *self.http.lock().unwrap_or_else(|p| p.into_inner()).entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
    }

    /// Render this instance's counters in the Prometheus text format.
    pub fn render_counters(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP lanyard_http_requests_total HTTP requests by route and status.\n# TYPE lanyard_http_requests_total counter"
        );
        for ((method, route, status), n) in self.http.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "lanyard_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}", escape(route));
        }
        let _ = writeln!(out, "# HELP lanyard_pushes_total Pushes sent to APNs, by outcome.\n# TYPE lanyard_pushes_total counter");
        for (outcome, n) in self.pushes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "lanyard_pushes_total{{outcome=\"{}\"}} {n}", escape(outcome));
        }
        let h = self.push_latency.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP lanyard_push_batch_seconds Time to send a batch of pushes to APNs.\n# TYPE lanyard_push_batch_seconds histogram"
        );
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "lanyard_push_batch_seconds_bucket{{le=\"{le}\"}} {}", h.buckets[i]);
        }
        let _ = writeln!(
            out,
            "lanyard_push_batch_seconds_bucket{{le=\"+Inf\"}} {}\nlanyard_push_batch_seconds_sum {}\nlanyard_push_batch_seconds_count {}",
            h.count, h.sum, h.count
        );
        drop(h);
        let _ =
            writeln!(out, "# HELP lanyard_commands_total Command targets by what happened to them.\n# TYPE lanyard_commands_total counter");
        for (event, c) in [
            ("queued", &self.commands_queued),
            ("delivered", &self.commands_delivered),
            ("acknowledged", &self.commands_acknowledged),
            ("errored", &self.commands_errored),
            ("not_now", &self.commands_not_now),
            ("expired", &self.commands_expired),
        ] {
            let _ = writeln!(out, "lanyard_commands_total{{event=\"{event}\"}} {}", c.load(Ordering::Relaxed));
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counts every request by its route template (never the raw path, which holds UDIDs).
pub async fn track(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    ctx.metrics.count_http(&method, &route, resp.status().as_u16());
    resp
}

/// `GET /metrics`.
pub async fn metrics(State(ctx): State<Ctx>) -> Response {
    let mut out = String::new();
    ctx.metrics.render_counters(&mut out);
    let now = ctx.now();
    if let Ok(q) = ctx.store.queue_stats(now).await {
        let age = q.oldest_pending_queued_at.map(|t| (now - t).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0);
        let _ = writeln!(
            out,
            "# HELP lanyard_queue_oldest_pending_seconds Age of the oldest pending command.\n# TYPE lanyard_queue_oldest_pending_seconds gauge\nlanyard_queue_oldest_pending_seconds {age}"
        );
        let _ = writeln!(
            out,
            "# HELP lanyard_queue_pending Pending command targets.\n# TYPE lanyard_queue_pending gauge\nlanyard_queue_pending {}",
            q.pending_targets
        );
        let _ = writeln!(
            out,
            "# HELP lanyard_devices_enrolled Enrolled devices.\n# TYPE lanyard_devices_enrolled gauge\nlanyard_devices_enrolled {}",
            q.enrolled
        );
        let _ = writeln!(
            out,
            "# HELP lanyard_devices_seen Devices seen within the window.\n# TYPE lanyard_devices_seen gauge\nlanyard_devices_seen{{window=\"1h\"}} {}\nlanyard_devices_seen{{window=\"24h\"}} {}",
            q.seen_last_hour, q.seen_last_day
        );
    }
    if let Ok(Some(info)) = ctx.push_cert_info().await {
        let _ = writeln!(
            out,
            "# HELP lanyard_push_certificate_days_left Days until the MDM push certificate expires.\n# TYPE lanyard_push_certificate_days_left gauge\nlanyard_push_certificate_days_left {}",
            info.days_left
        );
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
