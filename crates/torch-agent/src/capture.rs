//! Bounded capture of one output stream: the first `cap` bytes go to a log
//! file, the last `tail_cap` bytes stay in memory for the report, and the pipe
//! is always drained to EOF so the task never blocks on a full pipe.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tracing::warn;

/// In-memory tail kept for the report's logs.
pub(crate) const REPORT_TAIL_BYTES: usize = 64 * 1024;
/// Tail kept in the evidence.
pub(crate) const EVIDENCE_TAIL_BYTES: usize = 2 * 1024;

const READ_CHUNK: usize = 16 * 1024;

/// How long output pipes may stay open after the process group was killed
/// (only a process that escaped the group can hold them).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Runs `main` while draining `out_pipe` into `out` and `err_pipe` into `err`.
/// Once `main` is done, the pipes get [`PIPE_GRACE`] to reach EOF; after that
/// they are abandoned, keeping what was read.
pub(crate) async fn drain_while<O, E, F>(
    out: &mut Capture,
    out_pipe: Option<O>,
    err: &mut Capture,
    err_pipe: Option<E>,
    main: F,
) -> F::Output
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
    F: Future,
{
    let done = Notify::new();
    let drains = async {
        let both = async {
            tokio::join!(drain_opt(out, out_pipe), drain_opt(err, err_pipe));
        };
        let deadline = async {
            done.notified().await;
            tokio::time::sleep(PIPE_GRACE).await;
        };
        tokio::select! {
            () = both => {}
            () = deadline => warn!("output pipes still open after the process group was killed; abandoning them"),
        }
    };
    let main = async {
        let result = main.await;
        done.notify_one();
        result
    };
    let ((), result) = tokio::join!(drains, main);
    result
}

async fn drain_opt<R: AsyncRead + Unpin>(cap: &mut Capture, pipe: Option<R>) {
    if let Some(pipe) = pipe {
        cap.drain(pipe).await;
    }
}

/// One stream being captured.
pub(crate) struct Capture {
    file: Option<File>,
    cap: u64,
    written: u64,
    total: u64,
    tail: VecDeque<u8>,
    tail_cap: usize,
    /// A copy of every chunk, as it is read, for a live reader; chunks are
    /// dropped when it falls behind.
    tap: Option<mpsc::Sender<Vec<u8>>>,
}

impl Capture {
    /// Captures into `file` (if any) up to `cap` bytes, keeping a `tail_cap` tail.
    pub(crate) fn new(file: Option<File>, cap: u64, tail_cap: usize) -> Self {
        Capture {
            file,
            cap,
            written: 0,
            total: 0,
            tail: VecDeque::new(),
            tail_cap,
            tap: None,
        }
    }

    /// Sends a copy of every chunk read from now on to `tap`.
    pub(crate) fn set_tap(&mut self, tap: mpsc::Sender<Vec<u8>>) {
        self.tap = Some(tap);
    }

    /// Stops copying chunks (the live reader sees its channel close).
    pub(crate) fn untap(&mut self) {
        self.tap = None;
    }

    /// Reads `reader` to EOF (or error). Cancel-safe in the sense that what was
    /// read before the future is dropped stays recorded.
    pub(crate) async fn drain<R: AsyncRead + Unpin>(&mut self, mut reader: R) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(error = %e, "reading task output failed");
                    break;
                }
            };
            let chunk = &buf[..n];
            if let Some(tap) = &self.tap
                && tap.try_send(chunk.to_vec()).is_err()
            {
                // Full (the reader is behind) or closed: liveness is best effort.
            }
            self.total += n as u64;
            self.push_tail(chunk);
            self.write_file(chunk).await;
        }
        if let Some(file) = self.file.as_mut()
            && let Err(e) = file.flush().await
        {
            warn!(error = %e, "flushing a task log file failed");
        }
    }

    async fn write_file(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.written);
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if room == 0 {
            return;
        }
        let take = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        match file.write_all(&chunk[..take]).await {
            Ok(()) => self.written += take as u64,
            Err(e) => {
                warn!(error = %e, "writing a task log file failed; output no longer saved");
                self.file = None;
            }
        }
    }

    fn push_tail(&mut self, chunk: &[u8]) {
        if self.tail_cap == 0 {
            return;
        }
        if chunk.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - self.tail_cap..]);
            return;
        }
        self.tail.extend(chunk);
        let excess = self.tail.len().saturating_sub(self.tail_cap);
        self.tail.drain(..excess);
    }

    /// Bytes read from the stream in total.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// True when the log file does not hold the whole stream.
    pub(crate) fn file_truncated(&self) -> bool {
        self.total > self.written
    }

    /// True when the in-memory tail does not hold the whole stream.
    pub(crate) fn tail_truncated(&self) -> bool {
        self.total > self.tail.len() as u64
    }

    /// The last `max` bytes (at most) as text, starting on a character boundary.
    pub(crate) fn tail_text(&self, max: usize) -> String {
        let skip = self.tail.len().saturating_sub(max);
        let mut bytes: Vec<u8> = self.tail.iter().skip(skip).copied().collect();
        if skip > 0 {
            // Drop UTF-8 continuation bytes cut off from their lead byte.
            let cut = bytes
                .iter()
                .take(3)
                .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
                .count();
            bytes.drain(..cut);
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_the_file_keeps_the_tail_and_drains_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let file = File::create(&path).await.unwrap();
        let mut cap = Capture::new(Some(file), 100, 9);
        // 300 bytes ending in a multi-byte character straddling the tail start.
        let mut data = vec![b'a'; 290];
        data.extend("xyzé1234".as_bytes());
        cap.drain(&data[..]).await;
        assert_eq!(cap.total(), data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data[..100]);
        assert!(cap.file_truncated());
        assert!(cap.tail_truncated());
        assert_eq!(cap.tail_text(9), "xyzé1234");
        // Cutting inside `é` drops the orphaned continuation byte.
        assert_eq!(cap.tail_text(5), "1234");

        let mut small = Capture::new(None, 100, 64);
        small.drain(&b"hello"[..]).await;
        assert!(!small.tail_truncated());
        assert_eq!(small.tail_text(64), "hello");
    }
}
