//! The hub's checkpoint signing key: 32 random bytes (hex) in a file of
//! the hub's data dir, mode 0600. The task sandbox denies the hub's data
//! dir, so no task can read it.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;
use rand::RngExt;

use crate::HubError;

/// Loads the key at `path`, creating it (and its directory) when missing;
/// without a path, a key for this run only.
pub(crate) fn load_key(path: Option<&Path>) -> Result<SigningKey, HubError> {
    let Some(path) = path else {
        return Ok(SigningKey::from_bytes(&rand::rng().random()));
    };
    let bad = |why: String| HubError::Config(format!("audit key {}: {why}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("not 32 hex bytes".into()))?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            }
            let seed: [u8; 32] = rand::rng().random();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(|e| bad(e.to_string()))?;
            f.write_all(hex::encode(seed).as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            tracing::info!(path = %path.display(), "created the audit signing key");
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}
