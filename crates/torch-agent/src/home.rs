//! The executor's own home: `HOME` and `TMPDIR` of the agent's own (kept
//! across its tasks, so agent CLIs keep their sessions and settings apart
//! from every other agent on the machine), the template's files written
//! there, and the template's `env` values.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use torch_core::lifecycle::{Executor, HomeMode, Placeholders, render_text};

use crate::sandbox::Env;

/// The path of this process's binary (the agent's own `torch`), for the
/// `{torch}` placeholder; `torch` (looked up on `PATH`) if it cannot be told.
pub(crate) fn own_binary() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "torch".into())
}

/// The agent's own home under its work root.
pub(crate) const HOME_DIR: &str = "home";

/// Fills `values.home`, `values.model`, `values.base_url` and
/// `values.torch` (this process's own binary), creates the
/// agent's home (and `<home>/tmp`) when the executor asks for them, writes
/// the executor's files there and returns the variables to set for the
/// executor: `HOME`, `TMPDIR`, then the executor's `env`, rendered.
/// `inherited_home` is the `HOME` the task would otherwise get.
pub(crate) async fn prepare(
    exec: &Executor,
    work_root: &Path,
    inherited_home: Option<&std::ffi::OsStr>,
    values: &mut Placeholders,
) -> Result<Env, String> {
    values.model = exec.model.clone().unwrap_or_default();
    values.base_url = exec.base_url.clone().unwrap_or_default();
    values.torch = own_binary();
    let mut env: Env = Vec::new();
    let home = match exec.home {
        HomeMode::Agent => {
            let dir = absolute(&work_root.join(HOME_DIR))?;
            create_dir(&dir).await?;
            env.push(("HOME".into(), dir.clone().into_os_string()));
            Some(dir)
        }
        HomeMode::Inherit => None,
    };
    values.home = match (&home, inherited_home) {
        (Some(dir), _) => dir.display().to_string(),
        (None, Some(h)) => h.to_string_lossy().into_owned(),
        (None, None) => String::new(),
    };
    if let (HomeMode::Agent, Some(dir)) = (exec.tmpdir, &home) {
        let tmp = dir.join("tmp");
        create_dir(&tmp).await?;
        env.push(("TMPDIR".into(), tmp.into_os_string()));
    }
    if let Some(dir) = &home {
        for (rel, body) in &exec.files {
            let text =
                render_text(body, values).map_err(|m| format!("executor file {rel}: {m}"))?;
            write_atomic(&dir.join(rel), text.as_bytes())
                .await
                .map_err(|e| format!("cannot write {}: {e}", dir.join(rel).display()))?;
        }
    }
    for (name, value) in &exec.env {
        let v = render_text(value, values).map_err(|m| format!("executor env {name}: {m}"))?;
        env.push((OsString::from(name), OsString::from(v)));
    }
    Ok(env)
}

fn absolute(p: &Path) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("cannot resolve {}: {e}", p.display()))
}

async fn create_dir(dir: &Path) -> Result<(), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Writes through a temp file and a rename, so a CLI starting in another
/// slot of the same agent never reads half a file.
async fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".torch-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn own_home_tmpdir_files_and_env() {
        let root = tempfile::tempdir().unwrap();
        let mut exec = Executor {
            command: vec!["cli".into()],
            model: Some("m1".into()),
            base_url: Some("http://x/v1".into()),
            home: HomeMode::Agent,
            tmpdir: HomeMode::Agent,
            ..Executor::default()
        };
        exec.env.insert("CLI_HOME".into(), "{home}/.cli".into());
        exec.files.insert(
            ".cli/config.toml".into(),
            "model = \"{model}\"\nurl = \"{base_url}\"\n".into(),
        );
        let mut values = Placeholders::default();
        let env = prepare(&exec, root.path(), Some("/root".as_ref()), &mut values)
            .await
            .unwrap();
        let home = root.path().join("home");
        assert_eq!(values.home, home.display().to_string());
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| PathBuf::from(v))
        };
        assert_eq!(get("HOME"), Some(home.clone()));
        assert_eq!(get("TMPDIR"), Some(home.join("tmp")));
        assert!(home.join("tmp").is_dir());
        assert_eq!(get("CLI_HOME"), Some(home.join(".cli")));
        assert_eq!(
            std::fs::read_to_string(home.join(".cli/config.toml")).unwrap(),
            "model = \"m1\"\nurl = \"http://x/v1\"\n"
        );

        // Inherited: nothing created, the agent's HOME is `{home}`.
        let inherit = Executor {
            command: vec!["cli".into()],
            env: [("H".to_string(), "{home}".to_string())].into(),
            ..Executor::default()
        };
        let other = tempfile::tempdir().unwrap();
        let mut values = Placeholders::default();
        let env = prepare(&inherit, other.path(), Some("/root".as_ref()), &mut values)
            .await
            .unwrap();
        assert_eq!(env, vec![("H".into(), "/root".into())]);
        assert!(!other.path().join("home").exists());
    }
}
