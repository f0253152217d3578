//! Commands: the rules for queueing them (API and system), cancelling, and reporting status.

pub mod queue;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::command::Command;
use crate::services::auth::Actor;
use crate::services::push::PushSummary;
use crate::store::DynStore;
use crate::store::{NewCommand, TargetRecord};

/// The command queue: what operators and the rules ask devices to do.
#[derive(Clone)]
pub struct Commands {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: crate::services::audit::Audit,
    pub(crate) hold: crate::services::hold::Hold,
    pub(crate) supervision: crate::services::supervision::Supervision,
    pub(crate) push: crate::services::push::Push,
}

/// At most this many targets in one request.
pub const MAX_TARGETS: usize = 100_000;

#[derive(Debug, Serialize)]
pub struct Enqueued {
    pub command_uuid: String,
    pub request_type: String,
    pub targets: usize,
    /// What APNs answered when the targets were pushed (absent with `"push": false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushResult>,
}

/// The push that follows an enqueue. Large batches finish in the background.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PushResult {
    Done(PushSummary),
    InProgress { in_progress: bool },
    Failed { error: String },
}

/// How long an API call waits for its pushes before answering.
const PUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub udid: String,
    pub status: String,
    pub queued_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub not_now_count: i64,
    pub result: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct CommandStatusView {
    pub command_uuid: String,
    pub request_type: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub fields: Value,
    pub targets: Vec<TargetStatus>,
}

/// A pending target past its expiry is expired, whether or not the sweeper has written it yet.
pub fn effective_status(t: &TargetRecord, now: DateTime<Utc>) -> String {
    let pending = crate::store::commands::PENDING.contains(&t.status.as_str());
    if pending && t.expires_at.is_some_and(|e| e <= now) { "expired".into() } else { t.status.clone() }
}

impl TargetStatus {
    pub fn from_record(t: TargetRecord, now: DateTime<Utc>) -> Self {
        TargetStatus {
            status: effective_status(&t, now),
            udid: t.udid,
            queued_at: t.queued_at,
            sent_at: t.sent_at,
            completed_at: t.completed_at,
            updated_at: t.updated_at,
            not_now_count: t.not_now_count,
            result: t.result_json.and_then(|j| serde_json::from_str(&j).ok()),
        }
    }
}

impl Commands {
    /// Queue a command without auditing: the system's own commands (inventory, reconcile).
    pub async fn queue_command(
        &self,
        created_by: &str,
        cmd: &Command,
        targets: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<String> {
        let uuid = uuid::Uuid::new_v4().to_string();
        self.queue_command_as(&uuid, created_by, cmd, targets, expires_at, None).await?;
        Ok(uuid)
    }

    /// [`Commands::queue_command`] with a UUID chosen by the caller, for callers that record
    /// what the command is for before a device can answer it (profile reconcile), and the
    /// operator's audit entry, stored in the same transaction as the command.
    pub async fn queue_command_as(
        &self,
        uuid: &str,
        created_by: &str,
        cmd: &Command,
        targets: &[String],
        expires_at: Option<DateTime<Utc>>,
        audit: Option<crate::store::NewAuditEntry>,
    ) -> Result<()> {
        let new = self.new_command_as(uuid, created_by, cmd, expires_at);
        self.store.enqueue(&new, targets, audit).await?;
        Metrics::add(&self.metrics.commands_queued, targets.len() as u64);
        Ok(())
    }

    /// A command as the store keeps it, with a new UUID.
    pub fn new_command(&self, created_by: &str, cmd: &Command, expires_at: Option<DateTime<Utc>>) -> NewCommand {
        self.new_command_as(&uuid::Uuid::new_v4().to_string(), created_by, cmd, expires_at)
    }

    fn new_command_as(&self, uuid: &str, created_by: &str, cmd: &Command, expires_at: Option<DateTime<Utc>>) -> NewCommand {
        NewCommand {
            payload: cmd.to_plist(uuid),
            uuid: uuid.to_owned(),
            request_type: cmd.request_type().to_owned(),
            fields: Value::Object(cmd.fields_json()).to_string(),
            created_by: created_by.to_owned(),
            created_at: self.clock.now(),
            expires_at,
        }
    }

    /// Queue a command an operator asked for: validate it, apply the legal hold, check the
    /// targets exist and, for a command that needs supervision, that none is known not to be
    /// supervised ([`Commands::ensure_supervised`]); then audit it. Every face (API, bulk,
    /// console) comes here. `fields` holds Apple's keys for the command.
    pub async fn enqueue_command(
        &self,
        actor: &Actor,
        targets: Vec<String>,
        request_type: &str,
        fields: &Map<String, Value>,
        expires_at: Option<DateTime<Utc>>,
        push: bool,
    ) -> Result<Enqueued> {
        let cmd = Command::from_json(request_type, fields).map_err(|e| Error::unprocessable(e.field.clone(), e.message.clone()))?;
        if targets.is_empty() {
            return Err(Error::unprocessable("targets", "at least one device is needed"));
        }
        if targets.len() > MAX_TARGETS {
            return Err(Error::unprocessable("targets", format!("at most {MAX_TARGETS} devices in one request")));
        }
        if expires_at.is_some_and(|e| e <= self.clock.now()) {
            return Err(Error::unprocessable("expires_at", "must be in the future"));
        }
        let mut unique = targets.clone();
        unique.sort();
        unique.dedup();
        self.hold.ensure_command_allowed(actor, &unique, cmd.request_type()).await?;
        let existing: std::collections::HashSet<String> = self.store.existing_udids(&unique).await?.into_iter().collect();
        if let Some((i, missing)) = targets.iter().enumerate().find(|(_, u)| !existing.contains(*u)) {
            return Err(if targets.len() == 1 {
                Error::not_found(format!("no device with UDID {missing}"))
            } else {
                Error::unprocessable(format!("targets[{i}]"), format!("no device with UDID {missing}"))
            });
        }
        if let Command::ClearPasscode(_) = cmd {
            self.ensure_unlock_tokens(&unique).await?;
        }
        // After the legal hold (which refuses first) and the targets' existence: a command that
        // needs a supervised device is refused for devices known not to be supervised.
        self.supervision.ensure_supervised(&cmd, &unique).await?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let sample: Vec<&String> = unique.iter().take(20).collect();
        let audit = self.audit.audit_entry(
            actor,
            "command.enqueue",
            Some(&uuid),
            json!({"request_type": cmd.request_type(), "targets": unique.len(), "udids": sample, "expires_at": expires_at}),
        );
        self.queue_command_as(&uuid, &actor.name, &cmd, &unique, expires_at, Some(audit)).await?;
        let push = if push { Some(self.push_in_background(unique.clone()).await) } else { None };
        Ok(Enqueued { command_uuid: uuid, request_type: cmd.request_type().to_owned(), targets: unique.len(), push })
    }

    /// ClearPasscode needs the unlock token each device sent at TokenUpdate; only supervised
    /// iPhones and iPads send one. Refused whole (nothing queued), naming the devices without.
    async fn ensure_unlock_tokens(&self, udids: &[String]) -> Result<()> {
        let with: std::collections::HashSet<String> = self.store.udids_with_unlock_token(udids).await?.into_iter().collect();
        let without: Vec<&String> = udids.iter().filter(|u| !with.contains(*u)).collect();
        if without.is_empty() {
            return Ok(());
        }
        let message = if udids.len() == 1 {
            "this device has not given Lanyard an unlock token: only supervised devices do, at enrolment, so its passcode cannot be cleared remotely".to_owned()
        } else {
            format!(
                "{} of these devices have not given Lanyard an unlock token (only supervised devices do, at enrolment), so their passcodes cannot be cleared remotely; nothing was queued: leave them out and try again",
                without.len()
            )
        };
        let mut extra = Map::new();
        extra.insert("udids".into(), json!(without.iter().take(100).collect::<Vec<_>>()));
        extra.insert("count".into(), json!(without.len()));
        Err(Error::Invalid { code: "no_unlock_token", field: "request_type".into(), message, extra })
    }

    /// Push `udids`; answer with the result if it comes within a few seconds, else let it finish
    /// in the background. The command is queued either way: the sweeper re-pushes if needed.
    pub async fn push_in_background(&self, udids: Vec<String>) -> PushResult {
        let push = self.push.clone();
        let task = tokio::spawn(async move { push.push_devices(&udids).await });
        match tokio::time::timeout(PUSH_WAIT, task).await {
            Ok(Ok(Ok(summary))) => PushResult::Done(summary),
            Ok(Ok(Err(e))) => PushResult::Failed { error: e.to_string() },
            Ok(Err(e)) => PushResult::Failed { error: format!("push task failed: {e}") },
            Err(_) => PushResult::InProgress { in_progress: true },
        }
    }

    pub async fn command_status(&self, uuid: &str) -> Result<CommandStatusView> {
        let cmd = self.store.command(uuid).await?.ok_or_else(|| Error::not_found(format!("no command {uuid}")))?;
        let now = self.clock.now();
        let targets = self.store.command_targets(cmd.seq).await?.into_iter().map(|t| TargetStatus::from_record(t, now)).collect();
        Ok(CommandStatusView {
            command_uuid: cmd.uuid,
            request_type: cmd.request_type,
            created_by: cmd.created_by,
            created_at: cmd.created_at,
            expires_at: cmd.expires_at,
            fields: serde_json::from_str(&cmd.fields).unwrap_or(Value::Null),
            targets,
        })
    }

    /// Retire a device record (and its results). Refused while the device is on legal hold.
    pub async fn retire_device(&self, actor: &Actor, udid: &str) -> Result<()> {
        if self.store.device(udid).await?.is_none() {
            return Err(Error::not_found(format!("no device with UDID {udid}")));
        }
        self.hold.ensure_not_on_hold(actor, udid, "delete the device record").await?;
        self.store.delete_device(udid, self.audit.audit_entry(actor, "device.retire", Some(udid), json!({}))).await?;
        Ok(())
    }

    pub async fn cancel_command(&self, actor: &Actor, uuid: &str) -> Result<u64> {
        let cmd = self.store.command(uuid).await?.ok_or_else(|| Error::not_found(format!("no command {uuid}")))?;
        // A quarantine's lock and evidence commands stay queued while the hold lasts.
        if let Some(case_command) = self.store.case_command(uuid).await? {
            let action = format!("cancel the case's {} command", case_command.request_type);
            self.hold.ensure_not_on_hold(actor, &case_command.udid, &action).await?;
        }
        let audit = self.audit.audit_entry(actor, "command.cancel", Some(uuid), json!({"request_type": cmd.request_type}));
        let n = self.store.cancel_command(cmd.seq, self.clock.now(), audit).await?;
        Ok(n)
    }
}

/// What the faces read about commands, through this service rather than from the store.
impl Commands {
    pub async fn queue_stats(&self, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<crate::store::QueueStats> {
        Ok(self.store.queue_stats(now).await?)
    }

    pub async fn pending_count(&self, udid: &str, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<i64> {
        Ok(self.store.pending_count(udid, now).await?)
    }

    pub async fn latest_results(&self, udid: &str) -> crate::error::Result<Vec<crate::store::DeviceCommandRow>> {
        Ok(self.store.latest_results(udid).await?)
    }

    pub async fn device_commands(
        &self,
        udid: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> crate::error::Result<Vec<crate::store::DeviceCommandRow>> {
        Ok(self.store.device_commands(udid, before_seq, limit).await?)
    }

    pub async fn command_targets(&self, seq: i64) -> crate::error::Result<Vec<crate::store::TargetRecord>> {
        Ok(self.store.command_targets(seq).await?)
    }

    pub async fn command(&self, uuid: &str) -> crate::error::Result<Option<crate::store::CommandRecord>> {
        Ok(self.store.command(uuid).await?)
    }
}
