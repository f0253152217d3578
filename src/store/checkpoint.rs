//! Copies SQLite's write-ahead log back into the database file on a thread of its own.
//!
//! By default SQLite checkpoints from whichever connection commits once the log passes 1,000
//! pages, and a checkpoint ends in two fsyncs. The device path's statements run on runtime
//! threads ([`super::inline`]), so such a commit held a runtime thread, and every request
//! waiting on that thread, through the disk's flushes: with 100,000 devices enrolled,
//! `lanyard bench commands` found an eighth of the machine idle waiting for the disk. The
//! device path's connections therefore hand checkpoints to this thread; sqlx's connections
//! (threads of their own already) checkpoint as SQLite's automatic checkpoint does
//! ([`super::inline::patient_busy_handler`]).

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ffi};

/// The log's size that asks for a checkpoint: SQLite's own default.
pub(crate) const PAGES: c_int = 1000;
/// A rest after each checkpoint, so that a log a long reader keeps from being copied does not
/// have the thread checkpoint again at every commit.
const REST: Duration = Duration::from_millis(5);

/// The checkpointing thread of one database file. It ends when this is dropped.
pub struct Checkpointer {
    /// Boxed: each watched connection's commit hook holds its address.
    wake: Box<SyncSender<()>>,
}

impl Checkpointer {
    /// Starts the thread for the database file at `path`.
    pub fn start(path: PathBuf) -> std::io::Result<Checkpointer> {
        let (checkpointer, asked) = Checkpointer::unstarted();
        std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || checkpoint_when_asked(&path, &asked))?;
        Ok(checkpointer)
    }

    fn unstarted() -> (Checkpointer, Receiver<()>) {
        let (wake, asked) = sync_channel(1);
        (Checkpointer { wake: Box::new(wake) }, asked)
    }

    /// Have `conn` leave checkpoints to this thread. `conn` must be dropped before `self`.
    pub fn watch(&self, conn: &Connection) {
        let wake: *const SyncSender<()> = &*self.wake;
        // SAFETY: the handle is open (owned by `conn`); the hook's data outlives the
        // connection (the caller drops connections first) and is only read, through `&`.
        // Registering a hook replaces the automatic checkpoint's own.
        unsafe {
            ffi::sqlite3_wal_hook(conn.handle(), Some(on_commit), wake as *mut c_void);
        }
    }
}

/// Runs after every commit with the log's size in pages; never fails the commit.
unsafe extern "C" fn on_commit(wake: *mut c_void, _: *mut ffi::sqlite3, _: *const c_char, pages: c_int) -> c_int {
    if pages >= PAGES {
        // SAFETY: `watch` registered a pointer to the checkpointer's sender, which outlives
        // the connection. A full channel means a checkpoint is already asked for.
        let wake = unsafe { &*(wake as *const SyncSender<()>) };
        let _ = wake.try_send(());
    }
    super::inline::COMMITS.note();
    ffi::SQLITE_OK
}

fn checkpoint_when_asked(path: &std::path::Path, asked: &Receiver<()>) {
    let conn = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX) {
        Ok(conn) => conn,
        Err(e) => {
            // sqlx's connections still checkpoint once the log is 1,000 pages past the last.
            tracing::warn!("cannot open {} to checkpoint its log: {e}", path.display());
            return;
        }
    };
    while asked.recv().is_ok() {
        // PASSIVE: copies what no reader still needs, and never waits for the writers.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("checkpointing {}: {e}", path.display());
        }
        std::thread::sleep(REST);
        if let Err(TryRecvError::Disconnected) = asked.try_recv() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_leave_the_checkpoint_to_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let file_bytes = || std::fs::metadata(&path).unwrap().len();
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (v BLOB)").unwrap();
        let (checkpointer, asked) = Checkpointer::unstarted();
        checkpointer.watch(&writer);

        // About 1,500 pages of log: SQLite's automatic checkpoint would have copied them into
        // the file from this thread by now.
        for _ in 0..300 {
            writer.execute("INSERT INTO t VALUES (zeroblob(16000))", []).unwrap();
        }
        assert!(file_bytes() < 100_000, "the writer checkpointed: the file is {} bytes", file_bytes());
        assert!(asked.try_recv().is_ok(), "a log past 1,000 pages asks for a checkpoint");

        let thread = {
            let path = path.clone();
            std::thread::spawn(move || checkpoint_when_asked(&path, &asked))
        };
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while file_bytes() < 4_800_000 {
            assert!(std::time::Instant::now() < deadline, "the thread never copied the log: {} bytes", file_bytes());
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(writer);
        drop(checkpointer);
        thread.join().expect("the thread ends with its checkpointer");
    }
}
