//! A development CA: creates a trust domain's root and issues short-lived
//! workload certificates for SPIFFE IDs, in memory or as PEM files.
//!
//! Keys are ECDSA P-256 (Istio's default is RSA 2048 with ECDSA optional; the
//! ring provider cannot generate RSA keys). Workload certificates live
//! [`DEFAULT_WORKLOAD_TTL`] (24 h, Istio's `SECRET_TTL`), carry the SPIFFE
//! ID as their only SAN and are valid for both server and client auth.
//!
//! ```
//! use mesh_tls::{DevCa, SpiffeId};
//!
//! let ca = DevCa::new("cluster.local")?;
//! let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/web".parse()?;
//! let issued = ca.issue(&id, mesh_tls::DEFAULT_WORKLOAD_TTL)?;
//! let creds = issued.credentials()?;
//! assert_eq!(creds.id(), &id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::credentials::{CA_FILE, CERT_FILE, Credentials, CredentialsError, KEY_FILE};
use crate::identity::{IdentityError, SPIFFE_SCHEME, SpiffeId, validate_trust_domain};
use x509_parser::extensions::GeneralName;

/// The file name of the CA's private key in a CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Default workload certificate lifetime: 24 hours, as Istio's `SECRET_TTL`.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Default CA lifetime: 10 years, as Istio's self-signed root.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// How far back `not_before` is set, to tolerate clock skew between workloads.
const BACKDATE: Duration = Duration::from_secs(60);

/// A development certificate authority for one trust domain.
pub struct DevCa {
    trust_domain: Option<String>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    /// Creates a CA for `trust_domain`, valid for [`DEFAULT_CA_TTL`]. Its
    /// certificate carries the URI SAN `spiffe://<trust-domain>`.
    pub fn new(trust_domain: &str) -> Result<DevCa, CaError> {
        validate_trust_domain(trust_domain).map_err(CaError::Identity)?;
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(DnType::CommonName, "mesh-tls dev CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let uri = format!("{SPIFFE_SCHEME}{trust_domain}");
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into()
                .map_err(|e: rcgen::Error| CaError::Generate(e))?,
        )];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + DEFAULT_CA_TTL).into();
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;
        Ok(DevCa {
            trust_domain: Some(trust_domain.to_owned()),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key PEM. The trust domain is read
    /// from a `spiffe://<trust-domain>` URI SAN if the certificate has one;
    /// otherwise the CA issues for any trust domain.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<DevCa, CaError> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::Pem(e.to_string()))?;
        let key = KeyPair::from_pem(key_pem).map_err(CaError::Generate)?;
        let trust_domain = ca_trust_domain(&der);
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(CaError::Generate)?;
        Ok(DevCa {
            trust_domain,
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// Loads `ca.pem` and `ca-key.pem` from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<DevCa, CaError> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CaError::Io { path, source })
        };
        DevCa::from_pem(&read(CA_FILE)?, &read(CA_KEY_FILE)?)
    }

    /// Writes `ca.pem` and `ca-key.pem` (mode 0600) into `dir`, creating it.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<(), CaError> {
        let dir = dir.as_ref();
        create_dir(dir)?;
        write_atomic(&dir.join(CA_FILE), self.cert_pem.as_bytes(), false)?;
        write_atomic(&dir.join(CA_KEY_FILE), self.key_pem().as_bytes(), true)?;
        Ok(())
    }

    /// The trust domain this CA issues for, if known.
    pub fn trust_domain(&self) -> Option<&str> {
        self.trust_domain.as_deref()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a workload certificate for `id`, valid from a minute ago for `ttl`.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<IssuedCert, CaError> {
        let now = SystemTime::now();
        self.issue_with_validity(id, now - BACKDATE, now + ttl)
    }

    /// Issues a workload certificate for `id` valid between the two instants
    /// (tests use it for expired and not-yet-valid certificates).
    pub fn issue_with_validity(
        &self,
        id: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, CaError> {
        if let Some(td) = &self.trust_domain
            && td != id.trust_domain()
        {
            return Err(CaError::Identity(IdentityError::TrustDomainMismatch {
                expected: td.clone(),
                found: id.trust_domain().to_owned(),
            }));
        }
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            id.as_str()
                .to_owned()
                .try_into()
                .map_err(CaError::Generate)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Generate)?;
        Ok(IssuedCert {
            id: id.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
            not_after,
        })
    }
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn ca_trust_domain(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(uri) => {
            let td = uri.strip_prefix(SPIFFE_SCHEME)?.trim_end_matches('/');
            validate_trust_domain(td).ok()?;
            Some(td.to_owned())
        }
        _ => None,
    })
}

/// A workload certificate issued by a [`DevCa`], with its key and the CA.
#[derive(Clone)]
pub struct IssuedCert {
    /// The identity in the certificate.
    pub id: SpiffeId,
    /// The workload certificate, PEM.
    pub cert_pem: String,
    /// The workload private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The issuing CA's certificate, PEM.
    pub ca_pem: String,
    /// When the certificate expires.
    pub not_after: SystemTime,
}

impl IssuedCert {
    /// Parses the PEM into [`Credentials`].
    pub fn credentials(&self) -> Result<Credentials, CredentialsError> {
        Credentials::from_pem(
            self.ca_pem.as_bytes(),
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
        )
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` (mode 0600) into `dir`,
    /// creating it. Each file is written to a temporary name and renamed, so
    /// a watcher never reads half a file.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<(), CaError> {
        let dir = dir.as_ref();
        create_dir(dir)?;
        write_atomic(&dir.join(CA_FILE), self.ca_pem.as_bytes(), false)?;
        write_atomic(&dir.join(KEY_FILE), self.key_pem.as_bytes(), true)?;
        write_atomic(&dir.join(CERT_FILE), self.cert_pem.as_bytes(), false)?;
        Ok(())
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), CaError> {
    let io_err = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(&tmp).map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err)
}

/// Why the dev CA failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaError {
    /// Key generation, signing or certificate parsing failed.
    Generate(rcgen::Error),
    /// The CA certificate PEM could not be parsed.
    Pem(String),
    /// The identity or trust domain is invalid, or not the CA's.
    Identity(IdentityError),
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Generate(e) => write!(f, "certificate generation failed: {e}"),
            CaError::Pem(e) => write!(f, "bad CA certificate PEM: {e}"),
            CaError::Identity(e) => write!(f, "{e}"),
            CaError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for CaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaError::Generate(e) => Some(e),
            CaError::Identity(e) => Some(e),
            CaError::Io { source, .. } => Some(source),
            CaError::Pem(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn issued_cert_carries_the_id_and_default_ttl() {
        let ca = DevCa::new("cluster.local").unwrap();
        let issued = ca
            .issue(
                &id("spiffe://cluster.local/ns/a/sa/b"),
                DEFAULT_WORKLOAD_TTL,
            )
            .unwrap();
        let creds = issued.credentials().unwrap();
        assert_eq!(creds.id().as_str(), "spiffe://cluster.local/ns/a/sa/b");
        let der = creds.chain()[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let v = cert.validity();
        let life = v.not_after.timestamp() - v.not_before.timestamp();
        assert_eq!(life, (DEFAULT_WORKLOAD_TTL + BACKDATE).as_secs() as i64);
        assert!(!cert.is_ca());
    }

    #[test]
    fn refuses_other_trust_domains() {
        let ca = DevCa::new("cluster.local").unwrap();
        let err = ca
            .issue(&id("spiffe://other.org/ns/a/sa/b"), DEFAULT_WORKLOAD_TTL)
            .unwrap_err();
        assert!(matches!(
            err,
            CaError::Identity(IdentityError::TrustDomainMismatch { .. })
        ));
        assert!(DevCa::new("Bad Domain").is_err());
    }

    #[test]
    fn writes_and_loads_directories() {
        let dir = std::env::temp_dir().join(format!("mesh-tls-ca-{}", std::process::id()));
        let ca = DevCa::new("example.org").unwrap();
        ca.write(&dir).unwrap();
        let loaded = DevCa::load(&dir).unwrap();
        assert_eq!(loaded.trust_domain(), Some("example.org"));
        let issued = loaded
            .issue(&id("spiffe://example.org/ns/x/sa/y"), DEFAULT_WORKLOAD_TTL)
            .unwrap();
        let out = dir.join("workload");
        issued.write(&out).unwrap();
        let creds = crate::IdentityFiles::in_dir(&out).load().unwrap();
        assert_eq!(creds.id().principal(), "example.org/ns/x/sa/y");
        // The reloaded CA signs certificates the original CA's roots accept.
        assert_eq!(issued.ca_pem, ca.cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
