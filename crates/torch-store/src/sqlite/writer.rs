//! The single writer thread and its group commit.
//!
//! Every mutating operation is a closure sent over a bounded channel to one
//! thread that owns the write connection. The thread blocks for the first
//! operation, drains up to `max_batch - 1` more without waiting, and runs them
//! all in one `BEGIN IMMEDIATE … COMMIT`. Each operation runs inside its own
//! savepoint, so an operation that fails rolls back alone. Replies are sent
//! only after `COMMIT` returned: an acknowledged operation is durable (to
//! the WAL file, so it survives a `kill -9`; with `synchronous=FULL` also a
//! power loss). If the commit fails, every operation of the batch is told so.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

use super::rows::{dup_err, to_i64, to_u64};
use crate::StoreError;

/// What an operation sees of the open transaction.
pub(crate) struct Tx<'c> {
    /// The write connection, inside `BEGIN IMMEDIATE` and a savepoint.
    pub(crate) conn: &'c Connection,
    /// Highest fence handed out so far (read at the start of each batch).
    fence: u64,
}

impl Tx<'_> {
    /// The fence the next lease would get (not yet taken).
    pub(crate) fn peek_fence(&self) -> u64 {
        self.fence + 1
    }

    /// Marks the fence from [`Tx::peek_fence`] as used.
    pub(crate) fn take_fence(&mut self) -> u64 {
        self.fence += 1;
        self.fence
    }
}

/// A queued operation: run it, or fail it without running.
trait Work: Send {
    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> Box<dyn Reply>;
    fn abort(self: Box<Self>, err: StoreError);
}

/// An operation's result, held until the batch's commit is known.
trait Reply: Send {
    fn failed(&self) -> bool;
    fn send(self: Box<Self>, commit: Option<&StoreError>);
}

struct Call<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

struct Done<T> {
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Work for Call<F, T>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> Box<dyn Reply> {
        let result = (self.f)(tx);
        Box::new(Done {
            result,
            reply: self.reply,
        })
    }

    fn abort(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }
}

impl<T: Send> Reply for Done<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn send(self: Box<Self>, commit: Option<&StoreError>) {
        let result = match (self.result, commit) {
            (Err(e), _) => Err(e),
            (Ok(v), None) => Ok(v),
            (Ok(_), Some(e)) => Err(dup_err(e)),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = self.reply.send(result);
    }
}

type Job = Box<dyn Work>;

/// Handle to the writer thread. Dropping it lets the thread finish the queued
/// operations, close the connection and exit, and waits for that.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(conn: Connection, max_batch: usize) -> Result<Writer, StoreError> {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(2));
        let thread = std::thread::Builder::new()
            .name("torch-store-writer".into())
            .spawn(move || run(conn, rx, max_batch))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` in the next group commit and returns its result once durable.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let sender = self.tx.as_ref().ok_or_else(stopped)?;
        let (reply, done) = oneshot::channel();
        let job: Job = Box::new(Call { f, reply });
        sender.send(job).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the store writer thread panicked");
        }
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let n = jobs.len();
        run_batch(&conn, jobs.drain(..));
        debug!(ops = n, "store batch done");
    }
    if let Err((_, e)) = conn.close() {
        error!(error = %e, "closing the store failed");
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn read_fence(conn: &Connection) -> Result<u64, StoreError> {
    let mut st = conn.prepare_cached("SELECT value FROM counters WHERE name = 'fence'")?;
    let v: i64 = st.query_row([], |r| r.get(0))?;
    to_u64(v)
}

fn run_batch(conn: &Connection, mut jobs: impl Iterator<Item = Job>) {
    let start = exec(conn, "BEGIN IMMEDIATE").and_then(|()| match read_fence(conn) {
        Ok(f) => Ok(f),
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            Err(e)
        }
    });
    let fence = match start {
        Ok(f) => f,
        Err(e) => {
            error!(error = %e, "cannot begin a store transaction");
            jobs.for_each(|j| j.abort(dup_err(&e)));
            return;
        }
    };
    let mut tx = Tx { conn, fence };
    let mut replies: Vec<Box<dyn Reply>> = Vec::new();
    let mut broken: Option<StoreError> = None;
    for job in jobs.by_ref() {
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            job.abort(dup_err(&e));
            broken = Some(e);
            break;
        }
        let failed = match catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))) {
            Ok(reply) => {
                let failed = reply.failed();
                replies.push(reply);
                failed
            }
            Err(_) => {
                // The reply channel was dropped with the closure: the caller
                // sees `Unavailable`. Undo whatever the operation wrote.
                error!("a store operation panicked; its writes were rolled back");
                true
            }
        };
        let undo = if failed {
            exec(conn, "ROLLBACK TO op")
        } else {
            Ok(())
        };
        if let Err(e) = undo.and_then(|()| exec(conn, "RELEASE op")) {
            broken = Some(e);
            break;
        }
        if conn.is_autocommit() {
            broken = Some(StoreError::Unavailable(
                "sqlite aborted the transaction".into(),
            ));
            break;
        }
    }
    let outcome = match broken {
        Some(e) => {
            jobs.for_each(|j| j.abort(dup_err(&e)));
            Err(e)
        }
        None => commit(conn, fence, tx.fence),
    };
    if let Err(e) = &outcome {
        error!(error = %e, ops = replies.len(), "store batch rolled back");
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
    }
    let err = outcome.err();
    for reply in replies {
        reply.send(err.as_ref());
    }
}

fn commit(conn: &Connection, old_fence: u64, fence: u64) -> Result<(), StoreError> {
    if fence != old_fence {
        conn.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'fence'")?
            .execute([to_i64(fence)])?;
    }
    exec(conn, "COMMIT")
}
