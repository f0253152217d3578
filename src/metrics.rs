//! Prometheus metrics at `/metrics`: counters kept by this instance, and gauges read from the
//! database at scrape time (so every instance behind a load balancer reports the same queue).
//!
//! The exposition is the `prometheus-client` crate's (the Prometheus project's own Rust client):
//! it writes the OpenMetrics text format, escapes label values and keeps histograms cumulative,
//! and it is small (dtoa, itoa and parking_lot, the last already in the tree), where `metrics`
//! with `metrics-exporter-prometheus` brings a global recorder, quanta and a sketch crate.
//! Counter families are registered without their `_total` (OpenMetrics names the family, the
//! crate adds the suffix to each sample), so every sample keeps the name it had; help texts are
//! given without their final full stop, which the crate adds.
//!
//! The instance's counters live in one [`Registry`]; the database gauges go into a fresh registry
//! for each scrape, so that a gauge the database cannot answer for (or the push certificate,
//! before there is one) is left out rather than reported stale.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const LATENCY_BUCKETS: [f64; 9] = [0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

/// What `/metrics` is served as.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The route template, never the raw path (which holds UDIDs).
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    window: &'static str,
}

pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Counter>,
    pushes: Family<OutcomeLabels, Counter>,
    push_latency: Histogram,
    /// Each is the `lanyard_commands_total` sample of its `event` (a handle into the family).
    pub commands_queued: Counter,
    pub commands_delivered: Counter,
    pub commands_acknowledged: Counter,
    pub commands_errored: Counter,
    pub commands_not_now: Counter,
    pub commands_expired: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("lanyard");
        let http = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", http.clone());
        let pushes = Family::<OutcomeLabels, Counter>::default();
        registry.register("pushes", "Pushes sent to APNs, by outcome", pushes.clone());
        let push_latency = Histogram::new(LATENCY_BUCKETS);
        registry.register("push_batch_seconds", "Time to send a batch of pushes to APNs", push_latency.clone());
        let commands = Family::<EventLabels, Counter>::default();
        registry.register("commands", "Command targets by what happened to them", commands.clone());
        // Every event is reported from the start, at 0 until it happens.
        let event = |event| commands.get_or_create_owned(&EventLabels { event });
        Metrics {
            commands_queued: event("queued"),
            commands_delivered: event("delivered"),
            commands_acknowledged: event("acknowledged"),
            commands_errored: event("errored"),
            commands_not_now: event("not_now"),
            commands_expired: event("expired"),
            registry,
            http,
            pushes,
            push_latency,
        }
    }
}

impl Metrics {
    pub fn count_push(&self, outcome: &str, n: u64) {
        self.pushes.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc_by(n);
    }

    pub fn observe_push_latency(&self, d: Duration) {
        self.push_latency.observe(d.as_secs_f64());
    }

    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    pub fn count_http(&self, method: &str, route: &str, status: u16) {
        self.http.get_or_create(&HttpLabels { method: method.to_owned(), route: route.to_owned(), status }).inc();
    }

    /// Render this instance's counters (no end-of-exposition marker: the scrape adds it).
    pub fn render_counters(&self, out: &mut String) {
        encode_registry(out, &self.registry).expect("writing to a String");
    }
}

/// The gauges read from the database at scrape time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScrapeGauges {
    /// `None` when the database could not be asked: the queue and device gauges are left out.
    pub queue: Option<QueueGauges>,
    pub push_certificate_days_left: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueGauges {
    pub oldest_pending_seconds: f64,
    pub pending: i64,
    pub enrolled: i64,
    pub seen_last_hour: i64,
    pub seen_last_day: i64,
}

impl ScrapeGauges {
    fn render(&self, out: &mut String) {
        let mut registry = Registry::with_prefix("lanyard");
        if let Some(q) = &self.queue {
            let age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            age.set(q.oldest_pending_seconds);
            registry.register("queue_oldest_pending_seconds", "Age of the oldest pending command", age);
            let gauge = |v: i64| {
                let g = Gauge::<i64>::default();
                g.set(v);
                g
            };
            registry.register("queue_pending", "Pending command targets", gauge(q.pending));
            registry.register("devices_enrolled", "Enrolled devices", gauge(q.enrolled));
            let seen = Family::<WindowLabels, Gauge>::default();
            seen.get_or_create(&WindowLabels { window: "1h" }).set(q.seen_last_hour);
            seen.get_or_create(&WindowLabels { window: "24h" }).set(q.seen_last_day);
            registry.register("devices_seen", "Devices seen within the window", seen);
        }
        if let Some(days) = self.push_certificate_days_left {
            let g = Gauge::<i64>::default();
            g.set(days);
            registry.register("push_certificate_days_left", "Days until the MDM push certificate expires", g);
        }
        encode_registry(out, &registry).expect("writing to a String");
    }
}

/// The whole exposition: this instance's counters, the scrape's gauges, the end marker.
pub fn render(metrics: &Metrics, gauges: &ScrapeGauges) -> String {
    let mut out = String::new();
    metrics.render_counters(&mut out);
    gauges.render(&mut out);
    encode_eof(&mut out).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    /// Every metric keeps the name, labels and type it had before the crate (scripts scrape them).
    #[test]
    fn names_labels_and_types_are_kept() {
        let m = Metrics::default();
        m.count_http("GET", "/api/v1/devices/{udid}", 200);
        m.count_http("GET", "/api/v1/devices/{udid}", 200);
        m.count_push("delivered", 3);
        m.count_push("bad_device_token", 1);
        m.observe_push_latency(Duration::from_millis(20));
        m.observe_push_latency(Duration::from_secs(2));
        Metrics::add(&m.commands_queued, 4);
        Metrics::add(&m.commands_acknowledged, 1);
        let gauges = ScrapeGauges {
            queue: Some(QueueGauges { oldest_pending_seconds: 1.5, pending: 7, enrolled: 12, seen_last_hour: 3, seen_last_day: 9 }),
            push_certificate_days_left: Some(36),
        };
        let text = render(&m, &gauges);
        let l = lines(&text);
        for want in [
            "# HELP lanyard_http_requests HTTP requests by route and status.",
            "# TYPE lanyard_http_requests counter",
            r#"lanyard_http_requests_total{method="GET",route="/api/v1/devices/{udid}",status="200"} 2"#,
            "# TYPE lanyard_pushes counter",
            r#"lanyard_pushes_total{outcome="delivered"} 3"#,
            r#"lanyard_pushes_total{outcome="bad_device_token"} 1"#,
            "# TYPE lanyard_push_batch_seconds histogram",
            r#"lanyard_push_batch_seconds_bucket{le="0.005"} 0"#,
            r#"lanyard_push_batch_seconds_bucket{le="0.05"} 1"#,
            r#"lanyard_push_batch_seconds_bucket{le="1.0"} 1"#,
            r#"lanyard_push_batch_seconds_bucket{le="5.0"} 2"#,
            r#"lanyard_push_batch_seconds_bucket{le="+Inf"} 2"#,
            "lanyard_push_batch_seconds_count 2",
            "lanyard_push_batch_seconds_sum 2.02",
            "# TYPE lanyard_commands counter",
            r#"lanyard_commands_total{event="queued"} 4"#,
            r#"lanyard_commands_total{event="acknowledged"} 1"#,
            r#"lanyard_commands_total{event="delivered"} 0"#,
            r#"lanyard_commands_total{event="errored"} 0"#,
            r#"lanyard_commands_total{event="not_now"} 0"#,
            r#"lanyard_commands_total{event="expired"} 0"#,
            "# TYPE lanyard_queue_oldest_pending_seconds gauge",
            "lanyard_queue_oldest_pending_seconds 1.5",
            "# TYPE lanyard_queue_pending gauge",
            "lanyard_queue_pending 7",
            "# TYPE lanyard_devices_enrolled gauge",
            "lanyard_devices_enrolled 12",
            "# TYPE lanyard_devices_seen gauge",
            r#"lanyard_devices_seen{window="1h"} 3"#,
            r#"lanyard_devices_seen{window="24h"} 9"#,
            "# HELP lanyard_push_certificate_days_left Days until the MDM push certificate expires.",
            "# TYPE lanyard_push_certificate_days_left gauge",
            "lanyard_push_certificate_days_left 36",
        ] {
            assert!(l.contains(&want), "no line {want:?} in:\n{text}");
        }
        assert_eq!(l.last(), Some(&"# EOF"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(!text.contains(".."), "help texts end with one full stop:\n{text}");
        // Each family is described once.
        for family in ["lanyard_http_requests", "lanyard_commands", "lanyard_devices_seen"] {
            assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1, "{family}");
        }
    }

    /// Gauges the database could not give (or no push certificate yet) are left out, not 0.
    #[test]
    fn missing_gauges_are_left_out() {
        let text = render(&Metrics::default(), &ScrapeGauges::default());
        for absent in ["lanyard_queue_", "lanyard_devices_", "lanyard_push_certificate_days_left"] {
            assert!(!text.contains(absent), "{absent} in:\n{text}");
        }
        assert!(text.contains(r#"lanyard_commands_total{event="queued"} 0"#), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Label values are escaped (a route template cannot break the exposition).
    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.count_http("GET", "/a\"b\\c\nd", 404);
        let text = render(&m, &ScrapeGauges::default());
        assert!(text.contains(r#"route="/a\"b\\c\nd",status="404"} 1"#), "{text}");
    }
}
