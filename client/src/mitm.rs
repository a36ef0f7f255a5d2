//! `hsync proxy --intercept-tls`: the proxy's local certificate authority
//! and the TLS it terminates for the hosts the user listed.
//!
//! The CA is created once in its directory (`ca.pem`, and `ca-key.pem`
//! written with mode 0600 in a directory made 0700) and never leaves the
//! machine; a key file that others may read is refused. For each host
//! intercepted, a leaf certificate (SAN: the CONNECT host; valid for
//! [`LEAF_DAYS`] days, renewed a day before) is made on demand with a key of
//! its own and kept in memory with its rustls `ServerConfig` (ALPN
//! `http/1.1`). The chain sent is the leaf and the CA.

use crate::tls;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long a leaf certificate is valid.
pub const LEAF_DAYS: u64 = 7;
/// How long the CA is valid.
pub const CA_DAYS: u64 = 5 * 365;
/// Leaf configurations kept in memory at most (the map is emptied when full).
const MAX_LEAVES: usize = 4096;

/// Which hosts to intercept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Every host.
    All,
    /// This host exactly (a name or an IP address).
    Exact(String),
    /// `*.example.org`: any name below example.org (not example.org itself).
    Below(String),
}

fn normal(host: &str) -> String {
    host.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

impl HostPattern {
    /// `*` or `all`, `*.example.org`, or a host name or IP address.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let s = normal(s);
        if s == "*" || s == "all" {
            return Ok(HostPattern::All);
        }
        let (below, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, s.clone()),
        };
        let ok = !name.is_empty()
            && !name.contains('*')
            && (name.parse::<std::net::IpAddr>().is_ok()
                || name.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
        if !ok {
            return Err(format!("{s:?}: not a host name, an IP address, *.domain or *"));
        }
        Ok(if below { HostPattern::Below(name) } else { HostPattern::Exact(name) })
    }

    /// A comma-separated list (the value of `--intercept-tls`).
    pub fn parse_list(s: &str) -> Result<Vec<HostPattern>, String> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(HostPattern::parse).collect()
    }

    pub fn matches(&self, host: &str) -> bool {
        let host = normal(host);
        match self {
            HostPattern::All => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Below(d) => host.len() > d.len() + 1 && host.ends_with(d.as_str()) && host[..host.len() - d.len()].ends_with('.'),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::All => f.write_str("*"),
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Below(d) => write!(f, "*.{d}"),
        }
    }
}

/// The local CA and the hosts it is used for.
pub struct Interceptor {
    pub hosts: Vec<HostPattern>,
    pub dir: PathBuf,
    /// The CA certificate, PEM (what the user trusts).
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    /// base64 of the SHA-256 of the CA's SubjectPublicKeyInfo (Chromium's `--ignore-certificate-errors-spki-list`).
    pub spki_sha256: String,
    issuer: Issuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, (SystemTime, Arc<ServerConfig>)>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor").field("hosts", &self.hosts).field("dir", &self.dir).field("spki_sha256", &self.spki_sha256).finish()
    }
}

/// `$XDG_DATA_HOME/hsync/ca` or `~/.local/share/hsync/ca`.
pub fn default_ca_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("hsync").join("ca");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local").join("share").join("hsync").join("ca")
}

pub const CA_FILE: &str = "ca.pem";
pub const KEY_FILE: &str = "ca-key.pem";

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("system randomness");
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Writes `data` to `path` through a temporary file created with `mode`, renamed into place.
fn write_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let r = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

impl Interceptor {
    /// Loads the CA in `dir`, or creates it there when `dir` holds none.
    /// Returns it and whether it was created now.
    pub fn open(dir: &Path, hosts: Vec<HostPattern>) -> Result<(Interceptor, bool), String> {
        let (cert_path, key_path) = (dir.join(CA_FILE), dir.join(KEY_FILE));
        let err = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
        let created = !key_path.exists() && !cert_path.exists();
        if created {
            std::fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| err(dir, &e))?;
            let key = KeyPair::generate().map_err(|e| err(&key_path, &e))?;
            let mut params = CertificateParams::default();
            let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "hsync proxy");
            dn.push(DnType::CommonName, format!("hsync proxy local CA {host}").trim().to_string());
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            let now = SystemTime::now();
            params.not_before = offset(now - Duration::from_secs(3600));
            params.not_after = offset(now + Duration::from_secs(CA_DAYS * 86400));
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&key).map_err(|e| err(&cert_path, &e))?;
            // The key first, so that a CA certificate never exists without its key.
            write_new(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(|e| err(&key_path, &e))?;
            write_new(&cert_path, cert.pem().as_bytes(), 0o644).map_err(|e| err(&cert_path, &e))?;
        }
        let meta = std::fs::metadata(&key_path).map_err(|e| err(&key_path, &e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{}: the CA's private key may be read by others (mode {:o}); chmod 600 it, or remove the directory to make a new CA",
                key_path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| err(&key_path, &e))?;
        let ca_pem = std::fs::read_to_string(&cert_path).map_err(|e| err(&cert_path, &e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| err(&key_path, &e))?;
        let ca_der = tls::pem_certs(&cert_path)?.remove(0);
        let issuer = Issuer::from_ca_cert_der(&ca_der, key).map_err(|e| err(&cert_path, &e))?;
        let spki = issuer.key().subject_public_key_info();
        if !ca_der.as_ref().windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(format!("{}: the certificate is not for the key in {}", cert_path.display(), key_path.display()));
        }
        let spki_sha256 = b64(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
        let i = Interceptor { hosts, dir: dir.to_path_buf(), ca_pem, ca_der, spki_sha256, issuer, leaves: Mutex::new(HashMap::new()) };
        Ok((i, created))
    }

    /// Is `host` (from CONNECT) one to intercept?
    pub fn intercepts(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| p.matches(host))
    }

    /// The hosts, as given (`*` for all).
    pub fn hosts_text(&self) -> String {
        self.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
    }

    /// The server side of TLS for `host`: a leaf certificate made now, or kept from before.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        let host = normal(host);
        let now = SystemTime::now();
        let mut m = self.leaves.lock().unwrap();
        if let Some((until, c)) = m.get(&host) {
            if *until > now + Duration::from_secs(86400) {
                return Ok(c.clone());
            }
        }
        let until = now + Duration::from_secs(LEAF_DAYS * 86400);
        let c = Arc::new(self.make_leaf(&host, now, until)?);
        if m.len() >= MAX_LEAVES {
            m.clear();
        }
        m.insert(host, (until, c.clone()));
        Ok(c)
    }

    fn make_leaf(&self, host: &str, now: SystemTime, until: SystemTime) -> Result<ServerConfig, String> {
        let e = |e: &dyn std::fmt::Display| format!("certificate for {host}: {e}");
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(|x| e(&x))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset(now - Duration::from_secs(3600));
        params.not_after = offset(until);
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate().map_err(|x| e(&x))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|x| e(&x))?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut cfg = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|x| e(&x))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|x| e(&x))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// What to tell the user at start: where the CA is and how to trust it in one browser profile.
    pub fn instructions(&self, proxy_addr: &str) -> String {
        let ca = self.dir.join(CA_FILE);
        let ca = ca.display();
        format!(
            "hsync proxy: intercepting TLS (https://) for: {hosts}\n\
             \x20 Those connections are decrypted here, cached and re-encrypted with certificates of the local CA\n\
             \x20 {ca} (its key, {key}, is readable by you only and never leaves this machine).\n\
             \x20 Other hosts are tunnelled untouched. Trust the CA in ONE browser profile, not system-wide:\n\
             \x20   Firefox, one profile:   certutil -d sql:$HOME/.mozilla/firefox/PROFILE -A -t C,, -n 'hsync proxy CA' -i {ca}\n\
             \x20   Chromium on Linux:      certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n 'hsync proxy CA' -i {ca}\n\
             \x20                           (that database serves every Chromium profile of this user account)\n\
             \x20   Chromium, one profile:  chromium --user-data-dir=DIR --proxy-server=http://{proxy_addr} \\\n\
             \x20                             --ignore-certificate-errors-spki-list={spki}\n\
             \x20                           (trusts this key for that profile only; Chromium warns about the flag)\n\
             \x20 Untrust: certutil -d sql:PROFILE_DIR -D -n 'hsync proxy CA'; a new CA: remove {dir} and restart.",
            hosts = self.hosts_text(),
            key = self.dir.join(KEY_FILE).display(),
            spki = self.spki_sha256,
            dir = self.dir.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = HostPattern::parse_list("Example.com, *.example.org,127.0.0.1").unwrap();
        assert_eq!(p[0], HostPattern::Exact("example.com".into()));
        assert!(p[0].matches("example.com") && p[0].matches("EXAMPLE.com.") && !p[0].matches("www.example.com"));
        assert!(p[1].matches("a.example.org") && p[1].matches("a.b.example.org"));
        assert!(!p[1].matches("example.org") && !p[1].matches("badexample.org"));
        assert!(p[2].matches("127.0.0.1"));
        assert_eq!(HostPattern::parse("*").unwrap(), HostPattern::All);
        assert!(HostPattern::parse("a*.b").is_err() && HostPattern::parse("a b").is_err() && HostPattern::parse("").is_err());
        assert!(HostPattern::parse("[::1]").unwrap().matches("::1"));
    }

    #[test]
    fn ca_created_once_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ca");
        let (a, created) = Interceptor::open(&dir, vec![HostPattern::All]).unwrap();
        assert!(created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let (b, created) = Interceptor::open(&dir, vec![HostPattern::All]).unwrap();
        assert!(!created);
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.spki_sha256, b.spki_sha256);
        let c1 = a.server_config("example.com").unwrap();
        assert!(Arc::ptr_eq(&c1, &a.server_config("EXAMPLE.COM").unwrap()), "kept in memory");
        a.server_config("127.0.0.1").unwrap();
        std::fs::set_permissions(dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Interceptor::open(&dir, vec![]).unwrap_err().contains("chmod 600"));
    }
}
