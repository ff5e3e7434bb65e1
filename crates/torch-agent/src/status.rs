//! The task's exit status as the supervisor records it in the status file
//! beside the work dir (`exit N`, `signal N` or `error MESSAGE`, then
//! extras such as CPU time and degraded layers).

use std::io;
use std::path::Path;

use tracing::warn;

use crate::sandbox::Exit;

/// What the supervisor reports besides the exit.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StatusExtras {
    /// CPU time of the task's waited-for processes.
    pub(crate) cpu_ms: Option<u64>,
    /// Layers it could not apply.
    pub(crate) degraded: Vec<String>,
}

fn parse_extras(text: &str) -> StatusExtras {
    let mut x = StatusExtras::default();
    for line in text.lines().skip(1) {
        if let Some(ms) = line.strip_prefix("cpu_ms ") {
            x.cpu_ms = ms.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("degraded ") {
            let layer = rest.split(' ').next().unwrap_or_default();
            x.degraded.push(layer.to_string());
        }
    }
    x
}

/// The task's own exit as the supervisor recorded it. The supervisor itself
/// always ends by SIGKILL (it kills its whole group last), so its own status
/// only matters when it wrote none.
pub(crate) async fn supervised_exit(status_file: &Path, leader: Exit) -> (Exit, StatusExtras) {
    let mut extras = StatusExtras::default();
    let exit = match tokio::fs::read_to_string(status_file).await {
        Ok(text) if !text.is_empty() => {
            extras = parse_extras(&text);
            parse_status(&text).unwrap_or_else(|| {
                Exit::Unknown(format!(
                    "the supervisor wrote an unreadable status {text:?}"
                ))
            })
        }
        // Killed together with the task before it could write (timeout/cancel).
        _ if leader == Exit::Signal(9) => leader,
        _ => Exit::Unknown(format!(
            "the supervisor ended ({leader:?}) without reporting the task's exit status"
        )),
    };
    if let Err(e) = tokio::fs::remove_file(status_file).await
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(error = %e, "cannot remove the supervisor status file");
    }
    (exit, extras)
}

/// Parses the first line: `exit N`, `signal N` or `error MESSAGE` (see
/// `supervise`).
pub(crate) fn parse_status(text: &str) -> Option<Exit> {
    let first = text.lines().next().unwrap_or_default();
    let (word, rest) = first.trim_end().split_once(' ')?;
    match word {
        "exit" => rest.parse().ok().map(Exit::Code),
        "signal" => rest.parse().ok().map(Exit::Signal),
        "error" => Some(Exit::Unknown(rest.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("exit 3\n"), Some(Exit::Code(3)));
        assert_eq!(parse_status("signal 15"), Some(Exit::Signal(15)));
        assert_eq!(
            parse_status("error cannot start `x`: not found\n"),
            Some(Exit::Unknown("cannot start `x`: not found".into()))
        );
        assert_eq!(parse_status("garbage"), None);
        let text = "signal 9\ncpu_ms 1234\ndegraded network unshare failed\n";
        assert_eq!(parse_status(text), Some(Exit::Signal(9)));
        assert_eq!(
            parse_extras(text),
            StatusExtras {
                cpu_ms: Some(1234),
                degraded: vec!["network".into()],
            }
        );
        assert_eq!(parse_status("exit x"), None);
    }
}
