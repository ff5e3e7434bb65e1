//! The agent's identity: an ed25519 key pair made at first start and kept
//! in the data dir (`identity.key`, mode 0600), with the id the hub gave it
//! (`agent_id`), so a restarted agent comes back as itself. The private key
//! never leaves this process: tasks ask the runtime to sign.
//!
//! The data dir is locked (`identity.lock`, an exclusive `flock`) while the
//! agent runs, so two agents sharing one dir cannot both be the same agent:
//! the second gets a fresh key kept in memory only, and says so.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use nix::fcntl::{Flock, FlockArg};
use rand::RngExt;
use tracing::{info, warn};

use torch_core::AgentId;

use crate::error::AgentError;

const KEY_FILE: &str = "identity.key";
const ID_FILE: &str = "agent_id";
const LOCK_FILE: &str = "identity.lock";

/// The agent's key pair, and where it is kept.
pub(crate) struct Identity {
    /// The signing key; never leaves this process.
    pub(crate) key: SigningKey,
    /// The id the hub gave this agent in an earlier run, if any.
    pub(crate) agent_id: Option<AgentId>,
    /// The data dir, when the identity is kept on disk.
    dir: Option<PathBuf>,
    /// Held for the process's life: one agent per data dir.
    _lock: Option<Flock<File>>,
}

impl Identity {
    /// A key pair kept in memory only.
    pub(crate) fn ephemeral() -> Self {
        Identity {
            key: fresh_key(),
            agent_id: None,
            dir: None,
            _lock: None,
        }
    }

    /// The identity kept in `dir` (created when missing), or an ephemeral
    /// one when another agent holds that dir.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, AgentError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| AgentError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io("create data dir", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open identity lock", &lock_path))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, e)) => {
                warn!(dir = %dir.display(), error = %e, "another agent holds this data dir; using a fresh identity kept in memory only");
                return Ok(Identity::ephemeral());
            }
        };
        let key_path = dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(text) => parse_key(text.trim()).ok_or_else(|| AgentError::Config {
                field: "data_dir",
                problem: format!("{} is not a hex ed25519 key", key_path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = fresh_key();
                write_private(&key_path, &hex::encode(key.to_bytes()))
                    .map_err(io("write identity key", &key_path))?;
                info!(path = %key_path.display(), "made a new agent key");
                key
            }
            Err(e) => return Err(io("read identity key", &key_path)(e)),
        };
        let agent_id = std::fs::read_to_string(dir.join(ID_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Ok(Identity {
            key,
            agent_id,
            dir: Some(dir.to_path_buf()),
            _lock: Some(lock),
        })
    }

    /// Remembers the id the hub gave this agent (when kept on disk).
    pub(crate) fn remember(&mut self, id: AgentId) {
        if self.agent_id == Some(id) {
            return;
        }
        self.agent_id = Some(id);
        if let Some(dir) = &self.dir
            && let Err(e) = write_private(&dir.join(ID_FILE), &id.to_string())
        {
            warn!(error = %e, "could not remember the agent id");
        }
    }

    /// The public key, hex.
    pub(crate) fn public_hex(&self) -> String {
        torch_api::msg::public_key_hex(&self.key.verifying_key())
    }
}

fn fresh_key() -> SigningKey {
    let seed: [u8; 32] = rand::rng().random();
    SigningKey::from_bytes(&seed)
}

fn parse_key(text: &str) -> Option<SigningKey> {
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    Some(SigningKey::from_bytes(&bytes))
}

/// Writes `text` to `path` readable by the owner only, replacing it atomically.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn kept_across_restarts_private_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let id = AgentId::from_uuid(uuid::Uuid::from_u128(5));
        let public = {
            let mut first = Identity::load_or_create(dir.path()).unwrap();
            assert!(first.agent_id.is_none());
            first.remember(id);
            let second = Identity::load_or_create(dir.path()).unwrap();
            assert_ne!(
                second.public_hex(),
                first.public_hex(),
                "a second agent on a locked dir gets its own key"
            );
            assert!(second.agent_id.is_none());
            first.public_hex()
        };
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(again.public_hex(), public);
        assert_eq!(again.agent_id, Some(id));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
