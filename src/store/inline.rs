//! SQLite's device-path statements, run on the calling thread.
//!
//! sqlx gives every SQLite connection a thread of its own and hands each statement to it and
//! each row back, so every query costs two thread switches. On the device path (an Idle, a
//! command handed over and answered) those switches cost more than the statements themselves
//! (`perf`: half the server's CPU went to scheduling), so the handful of statements every
//! device request runs are run here instead, with rusqlite, over connections of their own to
//! the same database file (WAL: readers never wait; writers take turns).
//!
//! The SQL is the store's own (the constants in [`super::devices`] and [`super::commands`]),
//! and the sqlx path stays: a statement that would have to wait for another writer for more
//! than [`MAX_WAIT`] gives up before changing anything and the caller runs it through sqlx,
//! which waits without holding up a runtime thread. An in-memory database (tests) has no file
//! to share and uses sqlx alone.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::types::{FromSqlError, ToSql, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, Row};

use super::checkpoint::Checkpointer;
use super::commands::{NEXT_COMMAND, NEXT_COMMAND_NOT_DEFERRED, RECORD_RESULT};
use super::ddm::{MARK_DDM_ENABLED, PUT_DECLARATION_STATUS, PUT_STATUS_ITEM};
use super::devices::{DEVICE_SESSION, TOUCH_DEVICE};
use super::inventory::UPDATE_INVENTORY;
use super::sqlite::WAL_SIZE_LIMIT;
use super::{DdmDeclarationStatus, DeviceAnswer, DeviceSession, InventoryUpdate, NextCommand, RecordedResult, StoreResult};

/// How long a statement may hold up a runtime thread waiting for the write lock: the device
/// path's own writes hold it for tens of microseconds; a longer holder is a transaction
/// through sqlx (an enrolment, a bulk command), and waiting for it here would stall the other
/// requests on this thread (with 2 ms, `lanyard bench` enrolled 61 devices/s over HTTP; with
/// this, 142-147).
const MAX_WAIT: Duration = Duration::from_micros(300);
/// Idle connections kept (statements run on runtime threads: one or two per core in use).
const KEEP: usize = 8;

/// Connections for the device path's statements.
pub struct InlineSqlite {
    path: std::path::PathBuf,
    /// For reads; idle ones are kept here.
    readers: Mutex<Vec<Connection>>,
    /// All the device path's writes go through this one connection (SQLite runs one write at
    /// a time anyway): in WAL mode a connection drops its whole page cache whenever another
    /// connection has written, so with a connection per write every statement read its pages
    /// from the file again (12 `pread`s a request with 100,000 devices enrolled).
    writer: Mutex<Option<Connection>>,
    /// Declared after the connections: they go before the checkpointer they hand work to.
    checkpointer: Option<Checkpointer>,
}

/// The store's shared statements ask a backend for its in-place path through this, so that
/// only SQLite's store knows it has one: PostgreSQL's store has no such path and says so here,
/// without postgres.rs naming anything of SQLite's.
pub(crate) trait InPlace {
    fn inline(&self) -> Option<&InlineSqlite>;
}

impl InPlace for super::sqlite::SqliteStore {
    fn inline(&self) -> Option<&InlineSqlite> {
        self.inline.as_ref()
    }
}

impl InPlace for super::postgres::PgStore {
    /// PostgreSQL runs every statement through sqlx.
    fn inline(&self) -> Option<&InlineSqlite> {
        None
    }
}

/// What a statement run here came to.
pub enum Ran<T> {
    Done(T),
    /// Another writer held the lock for longer than [`MAX_WAIT`]; nothing changed.
    Busy,
}

impl InlineSqlite {
    /// For the database file at `path` (already created and migrated).
    pub fn new(path: std::path::PathBuf) -> Self {
        let checkpointer = Checkpointer::start(path.clone())
            .inspect_err(|e| tracing::warn!("no checkpoint thread ({e}): the device path's commits will checkpoint"))
            .ok();
        InlineSqlite { path, readers: Mutex::new(Vec::new()), writer: Mutex::new(None), checkpointer }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // As the sqlx connections: WAL is the file's own setting, these are per connection.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        conn.busy_handler(Some(wait_briefly))?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.watch(&conn);
        }
        Ok(conn)
    }

    /// Run the read `f` on an idle connection (or a new one), then keep the connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<Ran<T>> {
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        let result = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEEP {
            idle.push(conn);
        }
        drop(idle);
        ran(result)
    }

    /// Run `f`, which writes, on the writing connection.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<Ran<T>> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match writer.take() {
            Some(c) => c,
            None => self.open()?,
        };
        let result = f(&conn);
        *writer = Some(conn);
        drop(writer);
        ran(result)
    }

    pub fn device_session(&self, cert_sha256: &str) -> StoreResult<Ran<Option<DeviceSession>>> {
        self.read(|c| {
            first_row(c, DEVICE_SESSION, &[&cert_sha256], |r| {
                Ok(DeviceSession { udid: r.get(0)?, last_seen_at: time(r, 1)?, last_push_at: opt_time(r, 2)?, pending: r.get(3)? })
            })
        })
    }

    pub fn touch_device(&self, udid: &str, at: DateTime<Utc>) -> StoreResult<Ran<()>> {
        self.write(|c| run(c, TOUCH_DEVICE, &[&udid, &text(at)]))
    }

    pub fn next_command(&self, udid: &str, include_not_now: bool, now: DateTime<Utc>) -> StoreResult<Ran<Option<NextCommand>>> {
        let sql = if include_not_now { NEXT_COMMAND } else { NEXT_COMMAND_NOT_DEFERRED };
        let now = text(now);
        self.write(|c| {
            first_row(c, sql, &[&udid, &now, &now], |r| {
                Ok(NextCommand { seq: r.get(0)?, uuid: r.get(1)?, request_type: r.get(2)?, payload: r.get(3)?, for_case: r.get(4)? })
            })
        })
    }

    /// `record_result`'s statement, and with an inventory [`UPDATE_INVENTORY`] too if the
    /// command was a DeviceInformation, in one transaction; the row as
    /// [`super::CommandStore::record_result`] reads it.
    pub fn record_result(&self, a: &DeviceAnswer<'_>) -> StoreResult<Ran<Option<RecordedResult>>> {
        let (at, finished) = (text(a.at), a.finished());
        let args: [&dyn ToSql; 8] = [&a.udid, &a.command_uuid, &a.status, &a.plist, &a.json, &at, &finished, &a.cert_sha256];
        let record = |c: &Connection| {
            first_row(c, RECORD_RESULT, &args, |r| {
                let row = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, time(r, 4)?, opt_time(r, 5)?, r.get(6)?);
                Ok(RecordedResult::from_row(a.udid, row))
            })
        };
        let Some(inventory) = a.inventory else {
            return self.write(record);
        };
        self.write(|c| {
            // IMMEDIATE: a busy database fails here, before anything changed.
            c.execute_batch("BEGIN IMMEDIATE")?;
            let done = record(c).and_then(|recorded| {
                if recorded.as_ref().is_some_and(|r| r.request_type == "DeviceInformation") {
                    run_update_inventory(c, a.udid, inventory)?;
                }
                c.execute_batch("COMMIT")?;
                Ok(recorded)
            });
            if done.is_err() && !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
            done
        })
    }

    pub fn update_inventory(&self, udid: &str, i: &InventoryUpdate) -> StoreResult<Ran<()>> {
        self.write(|c| run_update_inventory(c, udid, i))
    }

    /// A DDM status report, as [`super::DdmStore::put_ddm_status`]: its items, its declaration
    /// states, the inventory and the DDM-on mark, in one transaction.
    pub fn put_ddm_status(
        &self,
        udid: &str,
        items: &[(String, String)],
        declarations: &[DdmDeclarationStatus],
        inventory: &InventoryUpdate,
        at: DateTime<Utc>,
    ) -> StoreResult<Ran<()>> {
        let at = text(at);
        self.write(|c| {
            // IMMEDIATE: a busy database fails here, before anything changed.
            c.execute_batch("BEGIN IMMEDIATE")?;
            let done = (|| {
                for (item, value) in items {
                    run(c, PUT_STATUS_ITEM, &[&udid, item, value, &at])?;
                }
                for d in declarations {
                    run(c, PUT_DECLARATION_STATUS, &[&udid, &d.identifier, &d.server_token, &d.active, &d.valid, &d.reasons, &at])?;
                }
                run_update_inventory(c, udid, inventory)?;
                run(c, MARK_DDM_ENABLED, &[&udid, &at])?;
                c.execute_batch("COMMIT")
            })();
            if done.is_err() && !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
            done
        })
    }
}

fn run_update_inventory(c: &Connection, udid: &str, i: &InventoryUpdate) -> rusqlite::Result<()> {
    let (info, security) = (i.info_updated_at.map(text), i.security_updated_at.map(text));
    run(
        c,
        UPDATE_INVENTORY,
        &[
            &udid,
            &i.serial_number,
            &i.model,
            &i.model_name,
            &i.product_name,
            &i.device_name,
            &i.os_version,
            &i.build_version,
            &i.platform,
            &i.imei,
            &i.meid,
            &i.wifi_mac,
            &i.bluetooth_mac,
            &i.supervised,
            &i.encrypted,
            &i.passcode_present,
            &i.passcode_compliant,
            &i.filevault_enabled,
            &i.storage_capacity_gb,
            &i.storage_available_gb,
            &i.battery_level,
            &info,
            &security,
        ],
    )
}

fn ran<T>(result: rusqlite::Result<T>) -> StoreResult<Ran<T>> {
    match result {
        Ok(v) => Ok(Ran::Done(v)),
        Err(e) if matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)) => Ok(Ran::Busy),
        Err(e) => Err(e.into()),
    }
}

/// The busy handler: a few quick retries, then short sleeps, up to [`MAX_WAIT`] in all (the
/// device path's writes hold the lock for tens of microseconds).
fn wait_briefly(attempt: i32) -> bool {
    const YIELDS: i32 = 4;
    const SLEEP: Duration = Duration::from_micros(50);
    match attempt {
        a if a < YIELDS => std::thread::yield_now(),
        a if SLEEP * (a - YIELDS) as u32 <= MAX_WAIT => std::thread::sleep(SLEEP),
        _ => return false,
    }
    true
}

/// The busy handler of sqlx's own SQLite connections (they run on threads of their own, so
/// they may wait), for up to about 10 s. SQLite's default handler sleeps longer and longer (up
/// to 100 ms a time), and a writer that sleeps that long keeps missing the moments the lock is
/// free between the device path's short writes: it starved for a second and more. Polling every
/// 50 µs instead cost CPU: under an enrolment burst, eight such writers woke 20,000 times a
/// second each (`perf`: a tenth of the server's samples in their sleeps). So a waiting writer
/// sleeps until one of this process's connections commits ([`Commits`]), or 1 ms passes (for
/// a writer in another process, or one that rolled back).
///
/// It also takes over SQLite's automatic checkpoint on these connections (registering a WAL
/// hook replaces it): past 1,000 pages of log, the committing connection checkpoints, as
/// SQLite's own hook does.
pub(crate) fn patient_busy_handler(db: std::ptr::NonNull<rusqlite::ffi::sqlite3>) {
    unsafe extern "C" fn retry(_: *mut std::ffi::c_void, attempt: std::ffi::c_int) -> std::ffi::c_int {
        COMMITS.wait(Duration::from_millis(1));
        std::ffi::c_int::from(attempt < 10_000)
    }
    unsafe extern "C" fn on_commit(
        _: *mut std::ffi::c_void,
        db: *mut rusqlite::ffi::sqlite3,
        name: *const std::ffi::c_char,
        pages: std::ffi::c_int,
    ) -> std::ffi::c_int {
        COMMITS.note();
        if pages >= super::checkpoint::PAGES {
            // SAFETY: SQLite hands the hook its own open handle and the database's name; this
            // is what its default WAL hook does (sqlite3_wal_autocheckpoint).
            unsafe { rusqlite::ffi::sqlite3_wal_checkpoint(db, name) };
        }
        rusqlite::ffi::SQLITE_OK
    }
    // SAFETY: `db` is an open connection handle held locked by the caller; neither hook
    // unwinds, and only `on_commit` touches the connection, as SQLite allows a WAL hook to.
    unsafe {
        rusqlite::ffi::sqlite3_busy_handler(db.as_ptr(), Some(retry), std::ptr::null_mut());
        rusqlite::ffi::sqlite3_wal_hook(db.as_ptr(), Some(on_commit), std::ptr::null_mut());
    }
}

/// Commits by this process's SQLite connections, for writers waiting on the lock to sleep on
/// rather than poll. A commit between a writer finding the lock taken and starting to wait is
/// missed; the wait's timeout covers it.
pub(crate) struct Commits {
    count: Mutex<u64>,
    committed: std::sync::Condvar,
    /// Writers in [`Commits::wait`]: with none, a commit (the device path makes thousands a
    /// second) costs one atomic load, not a lock and a futex wake-up.
    waiting: std::sync::atomic::AtomicUsize,
}

pub(crate) static COMMITS: Commits =
    Commits { count: Mutex::new(0), committed: std::sync::Condvar::new(), waiting: std::sync::atomic::AtomicUsize::new(0) };

impl Commits {
    /// A connection committed: wake the waiting writers, if any.
    pub(crate) fn note(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.waiting.load(SeqCst) == 0 {
            return;
        }
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.committed.notify_all();
    }

    /// Sleep until the next commit, or `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) {
        use std::sync::atomic::Ordering::SeqCst;
        self.waiting.fetch_add(1, SeqCst);
        let count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let seen = *count;
        let _ = self.committed.wait_timeout_while(count, timeout, |c| *c == seen);
        self.waiting.fetch_sub(1, SeqCst);
    }
}

/// Binds `$1`, `$2`... by name, as sqlx does: the store's SQL may use them out of order.
fn prepare<'c>(c: &'c Connection, sql: &str, args: &[&dyn ToSql]) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = c.prepare_cached(sql)?;
    for index in 1..=stmt.parameter_count() {
        let n = stmt.parameter_name(index).and_then(|name| name.strip_prefix('$')).and_then(|n| n.parse::<usize>().ok());
        let arg = n.and_then(|n| args.get(n.wrapping_sub(1))).ok_or(rusqlite::Error::InvalidParameterCount(index, args.len()))?;
        stmt.raw_bind_parameter(index, arg)?;
    }
    Ok(stmt)
}

fn run(c: &Connection, sql: &str, args: &[&dyn ToSql]) -> rusqlite::Result<()> {
    prepare(c, sql, args)?.raw_execute().map(drop)
}

/// The first row (the statements here return at most one), read to the end so that the
/// statement completes.
fn first_row<T>(c: &Connection, sql: &str, args: &[&dyn ToSql], read: impl Fn(&Row) -> rusqlite::Result<T>) -> rusqlite::Result<Option<T>> {
    let mut stmt = prepare(c, sql, args)?;
    let mut rows = stmt.raw_query();
    let mut first = None;
    while let Some(row) = rows.next()? {
        if first.is_none() {
            first = Some(read(row)?);
        }
    }
    Ok(first)
}

/// A timestamp as sqlx writes it to SQLite, so that the two paths' values compare and sort
/// alike.
fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn time(r: &Row, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    r.get_ref(i)?.as_str().map_err(|e| conversion(i, e)).and_then(|s| parse_time(s).ok_or_else(|| conversion(i, FromSqlError::InvalidType)))
}

fn opt_time(r: &Row, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match r.get_ref(i)? {
        ValueRef::Null => Ok(None),
        _ => time(r, i).map(Some),
    }
}

/// What sqlx reads back: RFC 3339, or SQLite's own `YYYY-MM-DD HH:MM:SS[.fff]` in UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%F %T%.f", "%FT%T%.f"].iter().find_map(|f| NaiveDateTime::parse_from_str(s, f).ok()).map(|n| n.and_utc())
}

fn conversion(i: usize, e: FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AuthenticateRecord, CommandStore, DeviceStore, NewCommand};

    const UDID: &str = "00008020-INLINE-TEST";

    /// A writer waiting on the lock wakes when another of the process's connections commits,
    /// not when its backstop runs out.
    #[tokio::test]
    async fn a_waiting_writer_wakes_at_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("lanyard.db").display())).await.unwrap();
        let waiter = std::thread::spawn(|| {
            let started = std::time::Instant::now();
            COMMITS.wait(Duration::from_secs(30));
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        sqlx::query("CREATE TABLE woken (v INTEGER)").execute(&store.pool).await.unwrap();
        let waited = waiter.join().unwrap();
        assert!(waited < Duration::from_secs(5), "slept {waited:?}: the commit did not wake the waiting writer");
    }

    async fn store_with_a_queued_command(dir: &std::path::Path) -> (SqliteStore, DateTime<Utc>) {
        queued_command_in(&format!("sqlite://{}", dir.join("lanyard.db").display())).await
    }

    /// A device bound to certificate "aa" with a DeviceInformation "CMD-1" queued.
    async fn queued_command_in(url: &str) -> (SqliteStore, DateTime<Utc>) {
        let store = SqliteStore::connect(url).await.unwrap();
        let at = Utc::now();
        let device = AuthenticateRecord {
            udid: UDID.into(),
            serial_number: Some("SERIAL1".into()),
            model: None,
            model_name: None,
            product_name: None,
            device_name: None,
            os_version: None,
            build_version: None,
            platform: "iPadOS".into(),
            topic: "com.apple.mgmt.External.test".into(),
            imei: None,
            meid: None,
            cert_sha256: "aa".into(),
            enrollment_token_id: None,
            at,
            signed_at: None,
        };
        store.authenticate_device(&device, None).await.unwrap();
        let cmd = NewCommand {
            uuid: "CMD-1".into(),
            request_type: "DeviceInformation".into(),
            payload: b"<plist/>".to_vec(),
            fields: "{}".into(),
            created_by: "test".into(),
            created_at: at,
            expires_at: Some(at + chrono::Duration::hours(1)),
        };
        store.enqueue(&cmd, &[UDID.to_owned()], None).await.unwrap();
        (store, at)
    }

    fn done<T>(r: StoreResult<Ran<T>>) -> T {
        match r.unwrap() {
            Ran::Done(v) => v,
            Ran::Busy => panic!("busy with no other writer"),
        }
    }

    #[tokio::test]
    async fn statements_here_and_through_sqlx_read_and_write_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (store, at) = store_with_a_queued_command(dir.path()).await;
        let inline = store.inline().expect("a file database runs the device path in place");

        let here = done(inline.device_session("aa")).expect("bound");
        let via_sqlx: DeviceSession = sqlx::query_as(DEVICE_SESSION).bind("aa").fetch_one(store.pool()).await.unwrap();
        assert_eq!((here.udid.as_str(), here.last_seen_at, here.last_push_at, here.pending), (UDID, via_sqlx.last_seen_at, None, 1));
        assert_eq!(here.last_seen_at, at, "sqlx's timestamp reads back exactly");
        assert!(done(inline.device_session("unknown")).is_none());

        // NEXT_COMMAND names $3 before $1 and $2: parameters are bound by name.
        let sent_at = at + chrono::Duration::seconds(5);
        let cmd = done(inline.next_command(UDID, true, sent_at)).expect("the queued command");
        assert_eq!((cmd.uuid.as_str(), cmd.request_type.as_str(), cmd.for_case), ("CMD-1", "DeviceInformation", false));
        let target = &store.command_targets(cmd.seq).await.unwrap()[0];
        assert_eq!((target.status.as_str(), target.sent_at), ("sent", Some(sent_at)), "written here, read by sqlx");

        // Another certificate records nothing.
        let answer = |cert_sha256| {
            let a = DeviceAnswer {
                udid: UDID,
                cert_sha256,
                command_uuid: "CMD-1",
                status: "acknowledged",
                plist: b"<plist/>",
                json: "{}",
                at: sent_at,
                inventory: None,
            };
            inline.record_result(&a)
        };
        assert!(done(answer("bb")).is_none());
        assert_eq!(store.command_targets(cmd.seq).await.unwrap()[0].status, "sent");
        let recorded = done(answer("aa")).expect("recorded");
        assert_eq!((recorded.request_type.as_str(), recorded.for_case, recorded.smart_groups), ("DeviceInformation", false, false));
        assert_eq!((recorded.session.pending, recorded.session.last_seen_at), (0, at));
        assert_eq!(store.command_targets(cmd.seq).await.unwrap()[0].status, "acknowledged");
        assert!(done(answer("aa")).is_none(), "a duplicate report changes nothing");

        let inventory = InventoryUpdate {
            device_name: Some("Trolley 3 #14".into()),
            supervised: Some(true),
            battery_level: Some(0.5),
            info_updated_at: Some(sent_at),
            ..Default::default()
        };
        done(inline.update_inventory(UDID, &inventory));
        done(inline.touch_device(UDID, sent_at));
        let device = store.device(UDID).await.unwrap().unwrap();
        assert_eq!(
            (device.device_name.as_deref(), device.supervised, device.serial_number.as_deref()),
            (Some("Trolley 3 #14"), Some(true), Some("SERIAL1"))
        );
        assert_eq!((device.last_seen_at, device.info_updated_at), (sent_at, Some(sent_at)));
    }

    #[tokio::test]
    async fn an_answer_stores_its_inventory_only_for_a_device_information() {
        let dir = tempfile::tempdir().unwrap();
        let file = format!("sqlite://{}", dir.path().join("lanyard.db").display());
        // In place (a file), and through sqlx alone (in memory: no in-place path).
        for url in [file.as_str(), "sqlite:file:inventory-answer?mode=memory&cache=shared"] {
            let (store, at) = queued_command_in(url).await;
            assert_eq!(store.inline().is_some(), url == file);
            let security_info = NewCommand {
                uuid: "CMD-2".into(),
                request_type: "SecurityInfo".into(),
                payload: b"<plist/>".to_vec(),
                fields: "{}".into(),
                created_by: "test".into(),
                created_at: at,
                expires_at: None,
            };
            store.enqueue(&security_info, &[UDID.to_owned()], None).await.unwrap();
            let answer = |command_uuid, inventory| DeviceAnswer {
                udid: UDID,
                cert_sha256: "aa",
                command_uuid,
                status: "acknowledged",
                plist: b"<plist/>",
                json: "{}",
                at,
                inventory,
            };
            let named = |name: &str| InventoryUpdate { device_name: Some(name.into()), info_updated_at: Some(at), ..Default::default() };

            // Device information in the answer to another command is not inventory.
            let stray = named("Not from a DeviceInformation");
            let recorded = store.record_result(&answer("CMD-2", Some(&stray))).await.unwrap().expect("recorded");
            assert_eq!(recorded.request_type, "SecurityInfo");
            assert_eq!(store.device(UDID).await.unwrap().unwrap().device_name, None, "{url}");

            let inventory = named("Trolley 3 #14");
            let recorded = store.record_result(&answer("CMD-1", Some(&inventory))).await.unwrap().expect("recorded");
            assert_eq!(recorded.request_type, "DeviceInformation");
            let device = store.device(UDID).await.unwrap().unwrap();
            assert_eq!((device.device_name.as_deref(), device.info_updated_at), (Some("Trolley 3 #14"), Some(at)), "{url}");
            assert_eq!(store.command_targets(recorded.command_seq).await.unwrap()[0].status, "acknowledged");

            // A duplicate report records nothing and changes nothing.
            let again = named("A duplicate");
            assert!(store.record_result(&answer("CMD-1", Some(&again))).await.unwrap().is_none());
            assert_eq!(store.device(UDID).await.unwrap().unwrap().device_name.as_deref(), Some("Trolley 3 #14"));
        }
    }

    #[tokio::test]
    async fn a_write_that_would_wait_long_is_handed_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, at) = store_with_a_queued_command(dir.path()).await;
        let inline = store.inline().unwrap();
        let other = Connection::open(dir.path().join("lanyard.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        let later = at + chrono::Duration::minutes(5);
        assert!(matches!(inline.touch_device(UDID, later).unwrap(), Ran::Busy));
        assert!(started.elapsed() < Duration::from_millis(200), "held a runtime thread for {:?}", started.elapsed());
        // Readers never wait in WAL mode.
        assert!(done(inline.device_session("aa")).is_some());
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(store.device(UDID).await.unwrap().unwrap().last_seen_at, at, "nothing changed");
        done(inline.touch_device(UDID, later));
        assert_eq!(store.device(UDID).await.unwrap().unwrap().last_seen_at, later);
    }

    /// Most writes are the device path's, so after a burst its write is usually the one that
    /// starts the log again: it cuts the file back as sqlx's connections do.
    #[tokio::test]
    async fn the_device_path_cuts_the_log_back_after_a_burst() {
        let dir = tempfile::tempdir().unwrap();
        let (store, at) = store_with_a_queued_command(dir.path()).await;
        let wal = dir.path().join("lanyard.db-wal");
        let grown = crate::store::sqlite::write_a_burst_and_checkpoint(&store, &wal).await;
        assert!(grown > WAL_SIZE_LIMIT as u64, "the burst did not grow the log: {grown} bytes");
        done(store.inline().unwrap().touch_device(UDID, at + chrono::Duration::minutes(5)));
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(after <= WAL_SIZE_LIMIT as u64, "the log stayed at {after} bytes after the device path's write");
    }

    /// SQLite builds a temporary b-tree for a three-value `IN` list, including the one in a
    /// partial index's condition that it checks on each status change; the device path's
    /// statements should build none but the one `RETURNING` needs, and find pending targets
    /// through the partial index (its condition repeated word for word).
    #[tokio::test]
    async fn device_path_statements_use_the_pending_index_and_no_temporary_tables() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _) = store_with_a_queued_command(dir.path()).await;
        let c = Connection::open(dir.path().join("lanyard.db")).unwrap();
        let plan = |sql: &str, explain: &str, col: usize| -> Vec<String> {
            let mut stmt = c.prepare(&format!("{explain} {sql}")).unwrap();
            let n = stmt.parameter_count();
            let args: Vec<Option<String>> = vec![None; n];
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(col)).unwrap();
            rows.map(Result::unwrap).collect()
        };
        for (name, sql, returning) in [
            ("DEVICE_SESSION", DEVICE_SESSION, 0),
            ("NEXT_COMMAND", NEXT_COMMAND, 1),
            ("NEXT_COMMAND_NOT_DEFERRED", NEXT_COMMAND_NOT_DEFERRED, 1),
            ("RECORD_RESULT", RECORD_RESULT, 1),
        ] {
            let temporary = plan(sql, "EXPLAIN", 1).iter().filter(|op| *op == "OpenEphemeral").count();
            assert_eq!(temporary, returning, "{name} builds {temporary} temporary tables");
            let steps = plan(sql, "EXPLAIN QUERY PLAN", 3);
            assert!(steps.iter().any(|s| s.contains("command_targets_pending")), "{name} does not use the pending index: {steps:?}");
            // (RECORD_RESULT scans the live groups, a handful of rows, for a smart one.)
            let scans_many = |s: &&String| ["SCAN command_targets", "SCAN t ", "SCAN devices", "SCAN d "].iter().any(|p| s.starts_with(p));
            assert!(!steps.iter().any(|s| scans_many(&s)), "{name} scans targets or devices: {steps:?}");
        }
    }

    #[test]
    fn timestamps_read_back_as_written() {
        let t = Utc::now();
        assert_eq!(parse_time(&text(t)), Some(t));
        assert_eq!(parse_time("2026-11-22 10:00:00").map(|t| t.to_rfc3339()), Some("2026-11-22T10:00:00+00:00".to_owned()));
        assert_eq!(parse_time("yesterday"), None);
    }
}
