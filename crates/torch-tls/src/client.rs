//! The client side: which CAs to trust, and clear certificate errors.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::{CertificateError, ClientConfig, RootCertStore};
use tracing::{debug, warn};

use crate::TlsError;
use crate::server::read_certs;

/// A client configuration that trusts only the CA certificates in
/// `ca_file` (PEM) when given, else the system's roots (possibly none: then
/// every `https://` hub is refused, with a message naming --ca-file).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: path.to_path_buf(),
                    problem: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                debug!(error = %e, "a system CA certificate could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            debug!(added, ignored, "system CA certificates loaded");
        }
    }
    if roots.is_empty() {
        // Plain `http://` hubs still work; a `https://` one is refused with
        // a message naming --ca-file (see `explain`).
        warn!("no trusted CA certificates on this system; give --ca-file for a https:// hub");
    }
    let cfg = ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A sentence for the certificate problem somewhere in `err`'s chain (an
/// HTTP or WebSocket client's error), or `None` when it is not one.
pub fn explain(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(t) = tls {
            return Some(sentence(t));
        }
        next = e.source();
    }
    // Some clients keep the TLS error where `source()` does not reach it
    // (an `io::Error`'s own source skips its payload); their `Debug` still
    // names it.
    let debug = format!("{err:?}");
    let named = [
        (
            "UnknownIssuer",
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ),
        (
            "BadSignature",
            rustls::Error::InvalidCertificate(CertificateError::BadSignature),
        ),
        (
            "NotValidForName",
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        ),
        (
            "Expired",
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        ),
    ];
    named
        .into_iter()
        .find(|(name, _)| debug.contains(&format!("InvalidCertificate({name}")))
        .map(|(_, e)| sentence(&e))
}

fn sentence(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "the hub's TLS certificate is not signed by a CA this client trusts: \
             give --ca-file with the hub's CA certificate (TORCH_CA_FILE; for \
             `torch serve --tls-self-signed DIR` it is DIR/ca.pem)"
            .into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the hub's TLS certificate does not name the host in the URL: connect by a \
              name the certificate lists (for a self-signed one, add it with --tls-name)"
            .into(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the hub's TLS certificate has expired".into(),
        other => format!("TLS handshake with the hub failed: {other}"),
    }
}
