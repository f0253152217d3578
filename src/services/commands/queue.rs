//! "Why hasn't my command arrived?": a device's pending queue, its push history, and a
//! plain-English diagnosis, for `GET /api/v1/devices/{udid}/queue` and `lanyard queue show`.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::services::commands::Commands;
use crate::services::commands::effective_status;
use crate::services::push::certificate::RENEWAL_STEPS;
use crate::store::push::REPUSH_BACKOFF_MINUTES;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingCommand {
    pub command_uuid: String,
    pub request_type: String,
    pub status: String,
    pub queued_at: DateTime<Utc>,
    pub waiting_seconds: i64,
    pub sent_at: Option<DateTime<Utc>>,
    pub not_now_count: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushState {
    pub token_valid: bool,
    pub token_invalid_since: Option<DateTime<Utc>>,
    pub last_push_at: Option<DateTime<Utc>>,
    pub last_push_outcome: Option<String>,
    pub pushes_sent: i64,
    pub pushes_since_last_seen: i64,
    pub next_repush_at: Option<DateTime<Utc>>,
}

/// A device's pending queue, its push history and a diagnosis.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    pub udid: String,
    pub enrolled: bool,
    pub last_seen_at: DateTime<Utc>,
    #[schema(inline)]
    pub pending: Vec<PendingCommand>,
    #[schema(inline)]
    pub push: PushState,
    /// Why nothing has arrived yet, in words a technician can act on.
    pub diagnosis: Vec<String>,
}

impl Commands {
    pub async fn queue_view(&self, udid: &str) -> Result<QueueView> {
        let d = self.store.device(udid).await?.ok_or_else(|| Error::not_found(format!("no device with UDID {udid}")))?;
        let pushed = self.store.device_push(udid).await?;
        let last_push_at = pushed.as_ref().map(|p| p.last_push_at);
        // The count holds while the device has not been seen since it was last pushed.
        let pushes_unanswered = pushed.as_ref().filter(|p| p.seen_at_push == Some(d.last_seen_at)).map_or(0, |p| p.pushes_unanswered);
        let now = self.clock.now();
        let mut pending = Vec::new();
        let mut before = None;
        'pages: loop {
            let rows = self.store.device_commands(udid, before, 500).await?;
            let Some(last) = rows.last() else { break };
            before = Some(last.target.command_seq);
            for r in rows {
                if !crate::store::commands::PENDING.contains(&r.target.status.as_str()) {
                    continue;
                }
                let status = effective_status(&r.target, now);
                if status == "expired" {
                    continue;
                }
                pending.push(PendingCommand {
                    waiting_seconds: (now - r.target.queued_at).num_seconds(),
                    command_uuid: r.uuid,
                    request_type: r.request_type,
                    status,
                    queued_at: r.target.queued_at,
                    sent_at: r.target.sent_at,
                    not_now_count: r.target.not_now_count,
                    expires_at: r.target.expires_at,
                });
                if pending.len() >= 1000 {
                    break 'pages;
                }
            }
        }
        pending.reverse();
        let token_valid = d.push_token.is_some() && d.push_token_invalid_at.is_none();
        let backoff = REPUSH_BACKOFF_MINUTES[(pushes_unanswered.max(1) as usize - 1).min(REPUSH_BACKOFF_MINUTES.len() - 1)];
        let unanswered = last_push_at.is_some_and(|p| p >= d.last_seen_at);
        let next_repush_at = (token_valid && !pending.is_empty()).then(|| match last_push_at {
            Some(p) if unanswered => p + Duration::minutes(backoff),
            _ => now,
        });

        let mut why = Vec::new();
        if !d.enrolled {
            why.push("The device is not enrolled (its MDM profile was removed, or enrolment never finished): it will not fetch commands until it enrols again.".to_owned());
        }
        match self.push.push_cert_info().await? {
            None => {
                why.push("No push certificate is loaded, so Lanyard cannot wake devices: load one with `lanyard push-cert import`.".into())
            }
            Some(info) if info.status == "expired" => {
                why.push(format!("The push certificate has expired, so no device can be woken: {RENEWAL_STEPS}."))
            }
            Some(_) => {}
        }
        if let Some((err, at)) = self.store.push_cert_error().await? {
            why.push(format!("APNs refused the push certificate at {}: {err}.", at.format("%Y-%m-%d %H:%M UTC")));
        }
        if let Some(since) = d.push_token_invalid_at {
            why.push(format!(
                "APNs said on {} that this device's push token is no longer valid (410 Unregistered): it gets no pushes until it sends a new TokenUpdate, usually by re-enrolling.",
                since.format("%Y-%m-%d")
            ));
        } else if d.enrolled && d.push_token.is_none() {
            why.push("The device has not sent a push token yet (no TokenUpdate).".into());
        }
        if pending.is_empty() {
            why.push("Nothing is waiting for this device.".into());
        } else {
            let deferred = pending.iter().filter(|p| p.status == "not_now").count();
            if deferred > 0 {
                why.push(format!(
                    "The device answered NotNow to {deferred} command(s) (it was locked or busy); they are offered again when it next checks in."
                ));
            }
            if unanswered {
                why.push(format!(
                    "Pushed {} time(s) since the device was last seen ({}), with no answer: it may be switched off, asleep off Wi-Fi, or unable to reach Lanyard. Last push outcome: {}.",
                    pushes_unanswered,
                    d.last_seen_at.format("%Y-%m-%d %H:%M UTC"),
                    pushed.as_ref().and_then(|p| p.last_push_outcome.as_deref()).unwrap_or("unknown")
                ));
            } else if d.enrolled && token_valid {
                why.push("Commands are waiting; the device gets them at its next connection (a push is sent when they are queued, and again by the sweeper if it stays quiet).".into());
            }
        }
        Ok(QueueView {
            udid: d.udid,
            enrolled: d.enrolled,
            last_seen_at: d.last_seen_at,
            pending,
            push: PushState {
                token_valid,
                token_invalid_since: d.push_token_invalid_at,
                last_push_at,
                last_push_outcome: pushed.as_ref().and_then(|p| p.last_push_outcome.clone()),
                pushes_sent: pushed.as_ref().map_or(0, |p| p.pushes_sent),
                pushes_since_last_seen: if unanswered { pushes_unanswered } else { 0 },
                next_repush_at,
            },
            diagnosis: why,
        })
    }
}
