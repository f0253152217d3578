//! `/metrics` (Prometheus) and the per-request counting behind it; the metrics themselves are
//! [`crate::metrics`].

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::context::Ctx;
use crate::metrics::{CONTENT_TYPE, QueueGauges, ScrapeGauges, render};

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
    let now = ctx.now();
    let mut gauges = ScrapeGauges::default();
    if let Ok(q) = ctx.commands.queue_stats(now).await {
        gauges.queue = Some(QueueGauges {
            oldest_pending_seconds: q.oldest_pending_queued_at.map(|t| (now - t).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0),
            pending: q.pending_targets,
            enrolled: q.enrolled,
            seen_last_hour: q.seen_last_hour,
            seen_last_day: q.seen_last_day,
        });
    }
    if let Ok(Some(info)) = ctx.push.push_cert_info().await {
        gauges.push_certificate_days_left = Some(info.days_left);
    }
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], render(&ctx.metrics, &gauges)).into_response()
}
