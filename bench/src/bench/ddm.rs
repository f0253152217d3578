//! `lanyard bench ddm`: Declarative Device Management's two costs that grow with a school.
//!
//! Lanyard's services run in this process (SQLite in a temporary directory, or
//! `--database-url`), with --devices iPads written through the store, DDM on for each, all in
//! one static group. No HTTP and no signature check: what is timed is the DDM service and its
//! store, the part this feature adds to a device request (the check-in path around it is what
//! `lanyard bench idle` measures).
//!
//! 1. Status reports: --concurrency tasks send each device's full status report (OS version and
//!    build, battery, passcode, FileVault, software-update state, five declaration states) in
//!    turn, three rounds; reports a second.
//! 2. A group change: the group gets a passcode declaration (`PUT .../declarations` as the
//!    service does it: store, re-token every member, queue the DeclarativeManagement commands),
//!    timed; then every device syncs as an iPad does after the command: `tokens`,
//!    `declaration-items`, and the two declarations that changed, with --concurrency devices
//!    at a time; the time until the last device has its new set.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use super::{Progress, WorkDir, enrol_through_store, in_process, mb, proc_status_kb};
use lanyard::context::Ctx;
use lanyard::store::DeviceFilter;

fn report(udid_index: usize, round: usize) -> Vec<u8> {
    let decl = |id: &str| json!({"identifier": id, "server-token": "x", "active": true, "valid": "valid"});
    json!({"StatusItems": {
        "device": {"operating-system": {"version": if round % 2 == 0 { "17.5" } else { "18.2" }, "build-version": "21F79"},
                   "power": {"battery-health": "normal"}},
        "passcode": {"is-present": true, "is-compliant": udid_index % 7 != 0},
        "diskmanagement": {"filevault": {"enabled": false}},
        "softwareupdate": {"install-state": "none", "failure-reason": {"count": 0}},
        "management": {"declarations": {
            "activations": [decl("lanyard.activation")],
            "configurations": [decl("lanyard.status-subscriptions")],
            "management": [decl("lanyard.organization"), decl("lanyard.server-capabilities"), decl("lanyard.properties")],
            "assets": []}}
    }, "Errors": [], "FullReport": true})
    .to_string()
    .into_bytes()
}

async fn all_udids(ctx: &Ctx, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    let mut filter = DeviceFilter { limit: 1000, ..Default::default() };
    loop {
        let page = ctx.store.list_devices(&filter).await?;
        let Some(last) = page.last().map(|d| d.udid.clone()) else { break };
        out.extend(page.into_iter().map(|d| d.udid));
        filter.after_udid = Some(last);
    }
    Ok(out)
}

/// Run `f` for every device, `concurrency` at a time; seconds taken.
async fn for_each<F, Fut>(udids: &Arc<Vec<String>>, concurrency: usize, what: &'static str, f: F) -> Result<f64>
where
    F: Fn(usize, String) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start(what, udids.len(), next.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (udids, next, f) = (udids.clone(), next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= udids.len() {
                    return anyhow::Ok(());
                }
                f(i, udids[i].clone()).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(secs)
}

pub async fn run(n: usize, concurrency: usize, database_url: Option<&str>) -> Result<ExitCode> {
    let dir = WorkDir::new(false)?;
    let ctx = in_process(&dir, database_url, &[]).await?;
    let actor = lanyard::services::auth::Actor::cli();
    enrol_through_store(&ctx, n).await?;
    let udids = Arc::new(all_udids(&ctx, n).await?);
    if udids.len() != n {
        bail!("{} devices stored, {n} expected", udids.len());
    }
    let group = ctx
        .profiles
        .create_group(&actor, "Bench iPads", lanyard::services::profiles::groups::GroupKind::Static, None)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    for chunk in udids.chunks(lanyard::services::commands::MAX_TARGETS) {
        ctx.profiles.add_group_members(&actor, group.id, chunk.to_vec()).await.map_err(|e| anyhow!("{e}"))?;
    }
    // DDM on for every device, with its first set.
    let on = ctx.clone();
    for_each(&udids, concurrency, "turning DDM on", move |_, udid| {
        let ctx = on.clone();
        async move {
            ctx.store.claim_ddm_request(&udid, ctx.now()).await?;
            ctx.ddm.declarative_management(&udid, "tokens", None).await.map_err(|e| anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;

    // 1. Status reports.
    const ROUNDS: usize = 3;
    let mut secs = 0.0;
    for round in 0..ROUNDS {
        let c = ctx.clone();
        secs += for_each(&udids, concurrency, "status reports", move |i, udid| {
            let ctx = c.clone();
            async move {
                ctx.ddm.declarative_management(&udid, "status", Some(&report(i, round))).await.map_err(|e| anyhow!("{e}"))?;
                Ok(())
            }
        })
        .await?;
    }
    let reports = n * ROUNDS;
    let last = ctx.store.device(&udids[0]).await?.and_then(|d| d.os_version);
    if last.as_deref() != Some("17.5") {
        bail!("the inventory did not follow the last report (os_version {last:?})");
    }

    // 2. A group change, and every device's sync after it.
    let body: lanyard::services::ddm::groups::PutGroupDeclarations = serde_json::from_value(json!({"declarations": [
        {"type": "com.apple.configuration.passcode.settings", "identifier": "bench.passcode", "payload": {"MinimumLength": 6}}]}))?;
    let started = Instant::now();
    let put = ctx.ddm.put_group_declarations(&actor, group.id, body).await.map_err(|e| anyhow!("{e}"))?;
    let put_secs = started.elapsed().as_secs_f64();
    let retokened = put.resync.map(|r| r.retokened).unwrap_or(0);
    if retokened != n {
        bail!("{retokened} of {n} devices re-tokened");
    }
    let changed = format!("lanyard.group.{}", group.id);
    let c = ctx.clone();
    let sync_secs = for_each(&udids, concurrency, "devices syncing", move |_, udid| {
        let (ctx, changed) = (c.clone(), changed.clone());
        async move {
            let ddm = &ctx.ddm;
            let e = |e: lanyard::error::Error| anyhow!("{e}");
            ddm.declarative_management(&udid, "tokens", None).await.map_err(e)?;
            let items = ddm.declarative_management(&udid, "declaration-items", None).await.map_err(e)?.unwrap_or_default();
            let items: Value = serde_json::from_slice(&items)?;
            if !items["Declarations"]["Configurations"].as_array().is_some_and(|c| c.iter().any(|d| d["Identifier"] == "bench.passcode")) {
                bail!("the new declaration is not in {udid}'s items");
            }
            ddm.declarative_management(&udid, "declaration/configuration/bench.passcode", None).await.map_err(e)?;
            ddm.declarative_management(&udid, &format!("declaration/activation/{changed}"), None).await.map_err(e)?;
            Ok(())
        }
    })
    .await?;
    let stats = ctx.commands.queue_stats(ctx.now()).await.map_err(|e| anyhow!("{e}"))?;
    println!(
        "ddm ({}, in process, {concurrency} concurrent): {reports} status reports in {secs:.2} s: {:.0} reports/s ({:.3} ms each); \
         a group change for {n} devices: stored and {retokened} re-tokened with their DeclarativeManagement commands queued in {put_secs:.2} s; \
         every device's sync after it (tokens, declaration-items, 2 declarations): {sync_secs:.2} s ({:.0} devices/s); \
         queue now {} pending targets; peak RSS {}",
        ctx.store.backend(),
        reports as f64 / secs.max(1e-9),
        secs * 1000.0 / reports as f64,
        n as f64 / sync_secs.max(1e-9),
        stats.pending_targets,
        mb(proc_status_kb(std::process::id(), "VmHWM").unwrap_or(0)),
    );
    Ok(ExitCode::SUCCESS)
}
