//! A CA and a hub certificate for a first deployment.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tracing::info;

use crate::TlsError;

/// The files [`self_signed`] keeps in its directory.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// The CA certificate: hand it to agents, nodes and the CLI (`--ca-file`).
    pub ca: PathBuf,
    /// The hub's certificate, signed by the CA.
    pub cert: PathBuf,
    /// The hub's private key (mode 0600).
    pub key: PathBuf,
    /// True when they were made now (false: reused from an earlier start).
    pub created: bool,
}

/// Makes, in `dir`, a CA (`ca.pem`) and a certificate for the hub
/// (`hub.pem`, key `hub.key`) valid for `localhost`, `127.0.0.1`, `::1` and
/// `names`; when all three files exist they are reused as they are (delete
/// them to make new ones). The CA's private key is not kept: nothing else
/// can be signed with it.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<SelfSigned, TlsError> {
    let out = SelfSigned {
        ca: dir.join("ca.pem"),
        cert: dir.join("hub.pem"),
        key: dir.join("hub.key"),
        created: false,
    };
    if out.ca.exists() && out.cert.exists() && out.key.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // A name of its own (from its key), so two set-ups' CAs never look
    // like one another.
    let tag: String = ca_key
        .public_key_raw()
        .iter()
        .rev()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    ca.distinguished_name
        .push(DnType::CommonName, format!("Nova Torch hub CA {tag}"));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut sans = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let mut leaf = CertificateParams::new(sans.clone())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "Nova Torch hub");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    write(&out.key, leaf_key.serialize_pem().as_bytes(), true)?;
    write(&out.cert, leaf_cert.pem().as_bytes(), false)?;
    write(&out.ca, ca_cert.pem().as_bytes(), false)?;
    info!(dir = %dir.display(), names = ?sans, "made a CA and a hub certificate");
    Ok(SelfSigned {
        created: true,
        ..out
    })
}

/// Writes a file (mode 0600 when `secret`).
fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_and_a_certificate_once_and_they_load() {
        let dir = tempfile::tempdir().unwrap();
        let made = self_signed(dir.path(), &["hub.example".into()]).unwrap();
        assert!(made.created);
        let again = self_signed(dir.path(), &[]).unwrap();
        assert!(!again.created, "reused on the next start");
        crate::server_config(&made.cert, &made.key).unwrap();
        crate::client_config(Some(&made.ca)).unwrap();
        let mode = std::fs::metadata(&made.key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        let err = crate::server_config(&made.ca, &made.ca).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }
}
