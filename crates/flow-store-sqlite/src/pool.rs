//! Connections: one writer behind an async mutex, a few readers behind a semaphore.
//!
//! The writer group-commits. Each unit of work runs in a SAVEPOINT inside one outer
//! transaction. A finished unit lets the units already queued for the writer run first;
//! the first unit to find the writer free again COMMITs for all of them (or the batch
//! fills up), and every unit's `commit` returns only after that COMMIT. Under load one
//! COMMIT covers many units, so the WAL is written once per batch, not once per request.

use std::{
    ops::Deref,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use flow_store::{CommitNotice, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, oneshot, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::map_err;

/// Units of work committed together at most.
const MAX_BATCH: usize = 128;

/// A waiting unit flushes its batch itself after this long (doubling), in case the writer's
/// holder was cancelled before it could.
const FLUSH_FALLBACK: Duration = Duration::from_millis(2);

/// When the checkpointer runs.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoints {
    /// How often it copies the WAL back into the database.
    pub every: Duration,
    /// WAL pages past which it makes sure the WAL starts again from its beginning.
    pub restart_frames: i64,
}

/// How long a WAL restart waits for readers still in the WAL, the writer held meanwhile.
const RESTART_PATIENCE: Duration = Duration::from_millis(50);

/// Frames left uncopied that the checkpointer copies with the writer held (1 MiB).
const RESTART_RESIDUE: i64 = 256;

/// Passive passes at most before taking the writer, however much is left.
const CATCH_UP_PASSES: usize = 4;

/// The writer connection and the batch it is building.
pub struct WriterState {
    conn: Connection,
    /// An outer transaction is open.
    in_tx: bool,
    /// Units released into the open transaction, waiting for its COMMIT.
    waiters: Vec<Waiter>,
}

struct Waiter {
    done: oneshot::Sender<StoreResult<()>>,
    notice: Option<CommitNotice>,
}

pub struct Pool {
    writer: Arc<tokio::sync::Mutex<WriterState>>,
    /// Writers queued for the mutex; while there are some, a finished unit leaves the
    /// batch open for them.
    waiting: Arc<AtomicUsize>,
    notices: broadcast::Sender<CommitNotice>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
    acquire_timeout: Duration,
    closed: AtomicBool,
    /// Dropping it stops the checkpointer thread.
    checkpointer: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

fn configure(conn: &Connection, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // With WAL, NORMAL keeps the database consistent after a crash and loses at most the
    // last transactions on power failure; FULL would fsync every commit.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -16000;
         PRAGMA temp_store = MEMORY;",
    )?;
    if read_only {
        conn.execute_batch("PRAGMA query_only = ON;")?;
    }
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

fn open_connection(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn, read_only)?;
    Ok(conn)
}

/// The database holds personal data and key hashes: only Flow's user may read it. SQLite
/// gives the WAL and shared-memory files the database file's mode, so creating that one
/// as 0600 (or tightening it) covers all three; the directory becomes 0700.
#[cfg(unix)]
fn keep_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn keep_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

impl Pool {
    pub fn open(
        path: &Path,
        readers: usize,
        acquire_timeout: Duration,
        checkpoints: Checkpoints,
        notices: broadcast::Sender<CommitNotice>,
    ) -> StoreResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("creating {}: {e}", parent.display()))
            })?;
        }
        keep_private(path)
            .map_err(|e| StoreError::Unavailable(format!("restricting {}: {e}", path.display())))?;
        // The writer first: it creates the file and switches it to WAL.
        let writer = open_connection(path, false).map_err(map_err)?;
        // Checkpoints run on their own thread (below), not inside the commit that happens
        // to cross the threshold: copying the WAL back and fsyncing the database held the
        // writer, and every tenant's writes queued behind it, for tens of milliseconds.
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .map_err(map_err)?;

        let readers = (0..readers)
            .map(|_| open_connection(path, true))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_err)?;
        let writer = Arc::new(tokio::sync::Mutex::new(WriterState {
            conn: writer,
            in_tx: false,
            waiters: Vec::new(),
        }));
        let waiting = Arc::new(AtomicUsize::new(0));
        let checkpointer = {
            let (waiting, notices) = (waiting.clone(), notices.clone());
            spawn_checkpointer(
                open_connection(path, false).map_err(map_err)?,
                checkpoints,
                writer.clone(),
                move |state| WriterGuard::holding(state, &waiting, &notices),
            )?
        };
        Ok(Self {
            writer,
            waiting,
            notices,
            reader_slots: Arc::new(Semaphore::new(readers.len())),
            readers: Arc::new(Mutex::new(readers)),
            acquire_timeout,
            closed: AtomicBool::new(false),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("database is closed".into()));
        }
        Ok(())
    }

    /// The writer connection, exclusively, waiting in line behind other writers.
    pub async fn writer(&self) -> StoreResult<WriterGuard> {
        self.check_open()?;
        let queued = Queued::new(&self.waiting);
        let guard = tokio::time::timeout(self.acquire_timeout, self.writer.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Unavailable("timed out waiting for the writer".into()))?;
        drop(queued);
        self.check_open()?;
        Ok(WriterGuard::holding(guard, &self.waiting, &self.notices))
    }

    /// The writer for a one-off statement outside any unit of work: the open batch is
    /// committed first, so the statement runs (and is visible) on its own.
    pub async fn writer_autocommit(&self) -> StoreResult<WriterGuard> {
        let mut writer = self.writer().await?;
        writer.flush();
        Ok(writer)
    }

    /// A reader connection, returned to the pool when dropped.
    pub async fn reader(&self) -> StoreResult<Reader> {
        self.check_open()?;
        let permit = tokio::time::timeout(
            self.acquire_timeout,
            self.reader_slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| StoreError::Unavailable("timed out waiting for a reader".into()))?
        .map_err(|_| StoreError::Unavailable("database is closed".into()))?;
        let conn = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| StoreError::Unavailable("database is closed".into()))?;
        Ok(Reader {
            conn: Some(conn),
            home: self.readers.clone(),
            permit,
        })
    }

    /// Refuses new work; connections close as their holders finish.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.checkpointer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.reader_slots.close();
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Runs a checkpoint on `conn` as `checkpoints` says until the returned sender is dropped.
///
/// A PASSIVE checkpoint never waits for the writer or the readers: it copies what no
/// reader still needs while writes go on. But the WAL only starts again from its beginning
/// when a write begins with all of it copied, which under steady writes never happens on
/// its own, and the file would grow without end. So once the WAL is past its restart
/// size, the checkpointer also takes the writer for a moment between two
/// batches, copies the little that was written since and waits for the readers still in
/// the WAL to finish, and the next write restarts the WAL.
fn spawn_checkpointer(
    conn: Connection,
    Checkpoints {
        every,
        restart_frames,
    }: Checkpoints,
    writer: Arc<tokio::sync::Mutex<WriterState>>,
    guard: impl Fn(OwnedMutexGuard<WriterState>) -> WriterGuard + Send + 'static,
) -> StoreResult<std::sync::mpsc::Sender<()>> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    // The restart waits for readers still reading the WAL (new ones read the database),
    // with the writer held: only briefly, or it tries again next time.
    conn.busy_timeout(RESTART_PATIENCE).map_err(map_err)?;
    let checkpoint = move |mode: &str| -> rusqlite::Result<(i64, i64)> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })
    };
    std::thread::Builder::new()
        .name("flow-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                let mut passive = checkpoint("PASSIVE");
                // Copy without the writer until only a little is left: each pass copies
                // what was written during the one before.
                for _ in 0..CATCH_UP_PASSES {
                    match passive {
                        Ok((in_wal, copied))
                            if in_wal >= restart_frames && in_wal - copied > RESTART_RESIDUE =>
                        {
                            passive = checkpoint("PASSIVE");
                        }
                        _ => break,
                    }
                }
                match passive {
                    Ok((in_wal, _)) if in_wal < restart_frames => {}
                    Ok(_) => {
                        let mut held = guard(writer.clone().blocking_lock_owned());
                        held.flush();
                        // Busy (a long read) is not an error: the next round tries again.
                        let _ = checkpoint("RESTART");
                    }
                    Err(error) => tracing::warn!(%error, "WAL checkpoint failed; retrying"),
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("starting the checkpointer: {e}")))?;
    Ok(stop)
}

/// A pooled read-only connection.
pub struct Reader {
    conn: Option<Connection>,
    home: Arc<Mutex<Vec<Connection>>>,
    permit: OwnedSemaphorePermit,
}

impl Deref for Reader {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A closed pool drops the connection instead (the semaphore is closed too).
            if !self.permit.semaphore().is_closed() {
                self.home
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
            }
        }
    }
}

/// Counts a writer queued for the mutex until it gets it or gives up.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Exclusive use of the writer connection.
pub struct WriterGuard {
    state: Option<OwnedMutexGuard<WriterState>>,
    waiting: Arc<AtomicUsize>,
    notices: broadcast::Sender<CommitNotice>,
}

impl Deref for WriterGuard {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.state.as_ref().expect("present until finished").conn
    }
}

impl WriterGuard {
    fn holding(
        state: OwnedMutexGuard<WriterState>,
        waiting: &Arc<AtomicUsize>,
        notices: &broadcast::Sender<CommitNotice>,
    ) -> Self {
        Self {
            state: Some(state),
            waiting: waiting.clone(),
            notices: notices.clone(),
        }
    }

    fn state(&mut self) -> &mut WriterState {
        self.state.as_mut().expect("present until finished")
    }

    /// Other units are queued for the writer.
    pub fn others_waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Starts a unit of work: a savepoint in the (possibly shared) outer transaction.
    pub fn begin_unit(&mut self) -> StoreResult<()> {
        let state = self.state();
        if !state.in_tx {
            // IMMEDIATE takes the write lock up front: another process (the CLI) writing
            // meanwhile waits on the busy timeout instead of failing a later upgrade.
            state
                .conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(map_err)?;
            state.in_tx = true;
        }
        state.conn.execute_batch("SAVEPOINT unit").map_err(map_err)
    }

    /// Undoes the current unit; the rest of the batch is unaffected.
    pub fn abandon_unit(&mut self) {
        let _ = self
            .state()
            .conn
            .execute_batch("ROLLBACK TO unit; RELEASE unit");
    }

    /// Keeps the unit's changes and waits until they are committed to disk and visible.
    pub async fn finish_unit(mut self, notice: Option<CommitNotice>) -> StoreResult<()> {
        self.state()
            .conn
            .execute_batch("RELEASE unit")
            .map_err(map_err)?;
        let (done, mut committed) = oneshot::channel();
        let state = self.state();
        state.waiters.push(Waiter { done, notice });
        if state.waiters.len() >= MAX_BATCH {
            self.flush();
        }
        let writer = self.state.take().expect("present until finished");
        let mutex = OwnedMutexGuard::mutex(&writer).clone();
        drop(writer);
        // Units queued for the writer run before this one tries to commit, and share the
        // COMMIT; when nobody is queued the commit happens at once.
        tokio::task::yield_now().await;
        let mut patience = FLUSH_FALLBACK;
        loop {
            if let Ok(result) = committed.try_recv() {
                return result;
            }
            // Whoever holds the writer flushes when it is done; if nobody does, flush now.
            if let Ok(state) = mutex.clone().try_lock_owned() {
                self.guard(state).flush();
                continue;
            }
            tokio::select! {
                result = &mut committed => {
                    return result.unwrap_or_else(|_| Err(StoreError::Unavailable("writer went away".into())));
                }
                () = tokio::time::sleep(patience) => {
                    let state = mutex.clone().lock_owned().await;
                    self.guard(state).flush();
                    patience = patience.saturating_mul(2);
                }
            }
        }
    }

    fn guard(&self, state: OwnedMutexGuard<WriterState>) -> WriterGuard {
        WriterGuard::holding(state, &self.waiting, &self.notices)
    }

    /// Commits the open batch, if any, and tells every unit in it how that went.
    pub fn flush(&mut self) {
        let notices = self.notices.clone();
        let state = self.state();
        if !state.in_tx {
            return;
        }
        let result = state.conn.execute_batch("COMMIT").map_err(map_err);
        if result.is_err() {
            let _ = state.conn.execute_batch("ROLLBACK");
        }
        state.in_tx = false;
        for waiter in state.waiters.drain(..) {
            if let (Ok(()), Some(notice)) = (&result, waiter.notice) {
                // No receiver (no gateway running) is not an error.
                let _ = notices.send(notice);
            }
            let _ = waiter.done.send(result.clone());
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // Leaving the writer with a batch open and nobody queued would strand its units.
        if self.state.is_some() && self.waiting.load(Ordering::Acquire) == 0 {
            self.flush();
        }
    }
}
