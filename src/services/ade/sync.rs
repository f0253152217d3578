//! Device sync with Apple School Manager, built to survive Apple's failure modes.
//!
//! The first sync fetches every device (`POST /server/devices`, pages of 1000); its last page's
//! cursor then asks only for changes (`POST /devices/sync`). Each page and the cursor after it
//! commit together, so an interrupted sync resumes at the page it stopped on. An expired or
//! invalid cursor starts a full fetch again. A cursor that comes back unchanged with
//! `more_to_follow` (the loop other MDMs have hit) is logged and broken with a full fetch, once
//! per run. Records of the same serial are resolved to the latest `op_date`; `deleted` flags the
//! device, never drops it; a full fetch flags the devices it no longer lists.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use super::{Ade, stored_error};
use crate::apple::ade::{AdeClient, AdeDevice, AdeError, PAGE_LIMIT};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::store::{AdeDeviceRecord, AdePage, CursorMove};

/// A sync started longer ago than this is taken to have died with its instance.
const STALE_SYNC: chrono::Duration = chrono::Duration::hours(1);
/// At most this many pages in one run (a million devices): a service that never stops saying
/// `more_to_follow` cannot keep a sync going for ever.
const MAX_PAGES: usize = 1000;

/// What one sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub pages: usize,
    pub devices: usize,
    pub removed: usize,
    /// Full fetches made (the first sync, or after an expired, invalid or stuck cursor).
    pub full_fetches: usize,
    /// ADE profiles assigned after the sync, by the token's rules, and refused.
    pub assigned: usize,
    pub assign_failed: usize,
}

impl Ade {
    /// Start a sync of one token in the background (the API's and console's "sync now").
    /// Returns at once; progress shows in the token's `sync_state` and `sync_devices`.
    pub async fn request_sync(&self, actor: &Actor, id: Uuid) -> Result<super::AdeTokenInfo> {
        let t = self.token(id).await?;
        self.audit.audit(actor, "ade.token.sync", Some(&id.to_string()), serde_json::json!({"server_name": t.server_name})).await?;
        let ade = self.clone();
        tokio::spawn(async move {
            if let Err(e) = ade.sync_token(id).await {
                tracing::warn!(token = %id, error = %e, "Apple School Manager sync failed");
            }
        });
        // Give the task a moment to mark itself running, so the answer shows it.
        tokio::task::yield_now().await;
        self.token(id).await
    }

    /// Sync the tokens whose last sync is older than `ade_sync_interval` (the sweeper).
    pub async fn sync_due(&self) -> Result<()> {
        let now = self.clock.now();
        let interval = chrono::Duration::from_std(self.config.ade_sync_interval).unwrap_or(chrono::Duration::minutes(30));
        for t in self.store.ade_tokens().await? {
            let due = t.sync_state != "running"
                && t.expires_at > now
                && t.last_sync_at.is_none_or(|at| now - at >= interval)
                && t.last_error_at.is_none_or(|at| now - at >= interval);
            if due {
                let ade = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = ade.sync_token(t.id).await {
                        tracing::warn!(token = %t.id, error = %e, "Apple School Manager sync failed");
                    }
                });
            }
        }
        Ok(())
    }

    /// Sync one token now. Returns None when another sync of it is running.
    pub async fn sync_token(&self, id: Uuid) -> Result<Option<SyncReport>> {
        let now = self.clock.now();
        if !self.store.begin_ade_sync(id, now, now - STALE_SYNC).await? {
            return Ok(None);
        }
        let result = self.sync_locked(id).await;
        let error = match &result {
            Ok(_) => None,
            Err(SyncError::Apple(e)) => Some(stored_error(e)),
            Err(SyncError::Lanyard(e)) => Some(e.to_string()),
        };
        self.store.finish_ade_sync(id, self.clock.now(), error.as_deref()).await?;
        match result {
            Ok(report) => {
                tracing::info!(token = %id, pages = report.pages, devices = report.devices, removed = report.removed, "Apple School Manager synced");
                Ok(Some(report))
            }
            Err(SyncError::Apple(e)) => Err(Error::Unavailable(format!("Apple School Manager sync: {e}"))),
            Err(SyncError::Lanyard(e)) => Err(e),
        }
    }

    async fn sync_locked(&self, id: Uuid) -> std::result::Result<SyncReport, SyncError> {
        let rec = self.store.ade_token(id).await?.ok_or_else(|| Error::not_found(format!("no Apple School Manager token {id}")))?;
        let client = self.client(self.secrets(&rec)?)?;
        let mut report = SyncReport::default();
        let mut restarts = 0;
        loop {
            let rec = self.store.ade_token(id).await?.ok_or_else(|| Error::not_found(format!("no Apple School Manager token {id}")))?;
            let outcome = match (&rec.cursor, &rec.fetch_cursor) {
                (Some(cursor), None) => self.sync_changes(&client, id, cursor.clone(), &mut report).await,
                // A full fetch under way (resumed where it stopped; "" = before its first page).
                (_, Some(fetch)) => {
                    let resume = Some(fetch.clone()).filter(|c| !c.is_empty());
                    self.full_fetch(&client, id, resume, &mut report).await
                }
                (None, None) => {
                    self.store.start_ade_fetch(id).await?;
                    report.full_fetches += 1;
                    self.full_fetch(&client, id, None, &mut report).await
                }
            };
            match outcome {
                Ok(()) => {
                    let assigned = self.assign_by_rules(&client, id).await?.map_err(|e| SyncError::Lanyard(Error::Unavailable(e)))?;
                    report.assigned = assigned.assigned;
                    report.assign_failed = assigned.failed;
                    return Ok(report);
                }
                // The cursor is no good any more: fetch everything again, once per run.
                Err(SyncError::Apple(AdeError::Cursor(code))) if restarts == 0 => {
                    tracing::warn!(token = %id, code, "Apple refused the sync cursor; fetching every device again");
                    restarts += 1;
                    self.store.start_ade_fetch(id).await?;
                    report.full_fetches += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Pages of `POST /server/devices` until `more_to_follow` is false.
    async fn full_fetch(
        &self,
        client: &AdeClient,
        id: Uuid,
        mut cursor: Option<String>,
        report: &mut SyncReport,
    ) -> std::result::Result<(), SyncError> {
        for _ in 0..MAX_PAGES {
            let page = client.fetch_devices(cursor.as_deref(), PAGE_LIMIT).await?;
            if page.more_to_follow && cursor.as_deref() == Some(page.cursor.as_str()) {
                tracing::error!(token = %id, "Apple's device fetch returned the same cursor with more_to_follow: stopping");
                return Err(AdeError::Status { status: 200, body: "the device fetch cursor does not advance".into() }.into());
            }
            let done = !page.more_to_follow;
            self.apply(id, page.devices, CursorMove::Fetch { cursor: page.cursor.clone(), done }, report).await?;
            if done {
                return Ok(());
            }
            cursor = Some(page.cursor);
        }
        Err(AdeError::Status { status: 200, body: format!("more than {MAX_PAGES} pages of devices") }.into())
    }

    /// Pages of `POST /devices/sync` until `more_to_follow` is false.
    async fn sync_changes(
        &self,
        client: &AdeClient,
        id: Uuid,
        mut cursor: String,
        report: &mut SyncReport,
    ) -> std::result::Result<(), SyncError> {
        for _ in 0..MAX_PAGES {
            let page = client.sync_devices(&cursor, PAGE_LIMIT).await?;
            let stuck = page.more_to_follow && page.cursor == cursor;
            self.apply(id, page.devices, CursorMove::Sync { cursor: page.cursor.clone() }, report).await?;
            if stuck {
                tracing::error!(token = %id, "Apple's device sync returned the same cursor with more_to_follow true: breaking the loop with a full fetch");
                return Err(AdeError::Cursor("STUCK_CURSOR".into()).into());
            }
            if !page.more_to_follow {
                return Ok(());
            }
            cursor = page.cursor;
        }
        Err(AdeError::Status { status: 200, body: format!("more than {MAX_PAGES} pages of changes") }.into())
    }

    /// Resolve a page's records (latest `op_date` per serial) and store them with the cursor.
    async fn apply(&self, id: Uuid, records: Vec<AdeDevice>, cursor: CursorMove, report: &mut SyncReport) -> Result<()> {
        let mut latest: BTreeMap<String, AdeDevice> = BTreeMap::new();
        for d in records {
            let serial = d.serial_number.trim().to_owned();
            if serial.is_empty() {
                continue;
            }
            match latest.get(&serial) {
                Some(kept) if kept.op_date.as_deref().unwrap_or("") > d.op_date.as_deref().unwrap_or("") => {}
                _ => {
                    latest.insert(serial, d);
                }
            }
        }
        let mut devices = Vec::with_capacity(latest.len());
        let mut removed = Vec::new();
        for (serial, d) in latest {
            if d.op_type.as_deref() == Some("deleted") {
                removed.push((serial, d.op_date));
            } else {
                devices.push(AdeDeviceRecord {
                    serial_number: serial,
                    model: d.model,
                    description: d.description,
                    color: d.color,
                    asset_tag: d.asset_tag,
                    os: d.os,
                    device_family: d.device_family,
                    profile_status: d.profile_status,
                    profile_uuid: d.profile_uuid,
                    profile_assign_time: d.profile_assign_time,
                    profile_push_time: d.profile_push_time,
                    device_assigned_date: d.device_assigned_date,
                    device_assigned_by: d.device_assigned_by,
                    mdm_migration_deadline: d.mdm_migration_deadline,
                    op_type: d.op_type,
                    op_date: d.op_date,
                });
            }
        }
        report.pages += 1;
        report.devices += devices.len();
        report.removed += removed.len();
        let page = AdePage { devices, removed, cursor, at: self.clock.now() };
        self.store.apply_ade_page(id, &page).await?;
        Ok(())
    }
}

/// Apple's refusal, or Lanyard's own failure.
enum SyncError {
    Apple(AdeError),
    Lanyard(Error),
}

impl From<AdeError> for SyncError {
    fn from(e: AdeError) -> Self {
        SyncError::Apple(e)
    }
}

impl From<Error> for SyncError {
    fn from(e: Error) -> Self {
        SyncError::Lanyard(e)
    }
}

impl From<crate::store::StoreError> for SyncError {
    fn from(e: crate::store::StoreError) -> Self {
        SyncError::Lanyard(e.into())
    }
}
