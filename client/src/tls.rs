//! Whom the client trusts on https:// connections, and how it connects.
//!
//! The roots are the system's trust store, read with rustls-native-certs
//! (on Debian `/etc/ssl/certs`, so the machine's own CAs and a company CA
//! added with `update-ca-certificates` count; `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are honoured), plus the PEM files given with `--cacert`.
//! Only when the system store holds no certificate at all does the client
//! fall back to the bundled Mozilla roots (webpki-roots), and it says so on
//! stderr. Connections offer HTTP/2 and HTTP/1.1 by ALPN: an origin that
//! offers h2 gets it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The ring crypto provider, the only one compiled in.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (one or several `CERTIFICATE` blocks);
/// an error when it cannot be read or holds none.
pub fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e:?}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display()));
    }
    Ok(certs)
}

/// The system's roots, or the bundled ones when it has none (with a line on
/// stderr saying so), read once per process.
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                eprintln!(
                    "hsync: the system trust store is empty{why}: using the bundled Mozilla roots (webpki-roots) instead; \
                     on Debian install ca-certificates"
                );
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(store)
        })
        .clone()
}

/// The system's roots plus the certificates of the `cacert` PEM files.
pub fn roots_with(cacert: &[PathBuf]) -> Result<Arc<RootCertStore>, String> {
    if cacert.is_empty() {
        return Ok(system_roots());
    }
    let mut store = (*system_roots()).clone();
    for p in cacert {
        for c in pem_certs(p)? {
            store.add(c).map_err(|e| format!("{}: not usable as a trust anchor: {e}", p.display()))?;
        }
    }
    Ok(Arc::new(store))
}

/// The client side of TLS: `roots` trusted, ALPN set by the connector.
pub fn client_config(roots: Arc<RootCertStore>) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Does this error message (with its causes) say the origin's certificate was refused?
pub fn is_certificate_error(msg: &str) -> bool {
    msg.contains("invalid peer certificate")
}

/// An error message with a hint when the cause is the origin's certificate.
pub fn explain(msg: String) -> String {
    if is_certificate_error(&msg) {
        format!("{msg} (the origin's TLS certificate is not trusted: neither the system's trust store nor --cacert vouch for it)")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none.pem");
        std::fs::write(&p, "hello\n").unwrap();
        assert!(pem_certs(&p).unwrap_err().contains("no PEM certificate"));
        assert!(pem_certs(&dir.path().join("missing.pem")).is_err());
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let a = params.self_signed(&key).unwrap().pem();
        let b = params.self_signed(&key).unwrap().pem();
        std::fs::write(&p, format!("{a}{b}")).unwrap();
        assert_eq!(pem_certs(&p).unwrap().len(), 2);
        let n = system_roots().len();
        assert_eq!(roots_with(&[p]).unwrap().len(), n + 2);
    }
}
