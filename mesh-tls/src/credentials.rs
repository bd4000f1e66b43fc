//! A workload's credentials loaded from PEM: the trust domain's CA bundle, the
//! workload's certificate chain and its private key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use crate::identity::{IdentityError, SpiffeId};

/// The file name of the CA bundle in an identity directory.
pub const CA_FILE: &str = "ca.pem";
/// The file name of the workload certificate chain in an identity directory.
pub const CERT_FILE: &str = "cert.pem";
/// The file name of the workload private key in an identity directory.
pub const KEY_FILE: &str = "key.pem";

/// The ring crypto provider, the only one this crate uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where a workload's PEM files are: CA bundle, certificate chain, key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityFiles {
    /// The CA bundle (trust anchors of the trust domain).
    pub ca: PathBuf,
    /// The workload's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The workload's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

impl IdentityFiles {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir` (what
    /// [`IssuedCert::write`](crate::IssuedCert::write) writes).
    pub fn in_dir(dir: impl AsRef<Path>) -> IdentityFiles {
        let dir = dir.as_ref();
        IdentityFiles {
            ca: dir.join(CA_FILE),
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }

    /// Reads the three files' bytes.
    pub(crate) fn read(&self) -> Result<[Vec<u8>; 3], CredentialsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CredentialsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok([read(&self.ca)?, read(&self.cert)?, read(&self.key)?])
    }

    /// Reads and parses the files.
    pub fn load(&self) -> Result<Credentials, CredentialsError> {
        let [ca, cert, key] = self.read()?;
        Credentials::from_pem(&ca, &cert, &key)
    }
}

/// Parsed, validated credentials of one workload: its identity, certified
/// key, and the trust domain's roots (with a client-certificate verifier over
/// them).
///
/// Build with [`Credentials::from_pem`] or [`IdentityFiles::load`]; share
/// through a [`CredentialStore`](crate::CredentialStore) so they can rotate.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) id: SpiffeId,
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl Credentials {
    /// Parses PEM: the CA bundle (one or more certificates), the chain (leaf
    /// first) and the key. The key must match the leaf, and the leaf must
    /// carry exactly one valid SPIFFE ID.
    pub fn from_pem(
        ca_pem: &[u8],
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Credentials, CredentialsError> {
        let provider = provider();
        let cas = certs_from_pem(ca_pem, "CA bundle")?;
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots.add(ca).map_err(CredentialsError::BadCa)?;
        }
        let roots = Arc::new(roots);
        let chain = certs_from_pem(chain_pem, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CredentialsError::Pem {
            what: "private key",
            source: e,
        })?;
        let leaf = chain
            .first()
            .ok_or(CredentialsError::Empty("certificate chain"))?;
        let id = SpiffeId::from_certificate(leaf).map_err(CredentialsError::Identity)?;
        let certified =
            CertifiedKey::from_der(chain, key, &provider).map_err(CredentialsError::Key)?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| CredentialsError::Verifier(e.to_string()))?;
        Ok(Credentials {
            id,
            certified: Arc::new(certified),
            roots,
            client_verifier,
            provider,
        })
    }

    /// This workload's SPIFFE ID (from its certificate).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The workload's certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("chain_len", &self.certified.cert.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

fn certs_from_pem(
    pem_bytes: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CredentialsError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CredentialsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(CredentialsError::Empty(what));
    }
    Ok(certs)
}

/// Why credentials could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum CredentialsError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A PEM section could not be parsed.
    Pem {
        /// Which input (CA bundle, certificate chain, private key).
        what: &'static str,
        /// The PEM error.
        source: pem::Error,
    },
    /// An input held no certificate.
    Empty(&'static str),
    /// A CA certificate was refused as a trust anchor.
    BadCa(rustls::Error),
    /// The key could not be loaded or does not match the certificate.
    Key(rustls::Error),
    /// The certificate's SPIFFE identity is missing or invalid.
    Identity(IdentityError),
    /// The client-certificate verifier could not be built from the roots.
    Verifier(String),
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            CredentialsError::Pem { what, source } => write!(f, "bad PEM in {what}: {source}"),
            CredentialsError::Empty(what) => write!(f, "no certificate in {what}"),
            CredentialsError::BadCa(e) => write!(f, "bad CA certificate: {e}"),
            CredentialsError::Key(e) => write!(f, "bad private key: {e}"),
            CredentialsError::Identity(e) => write!(f, "bad workload identity: {e}"),
            CredentialsError::Verifier(e) => write!(f, "cannot build verifier: {e}"),
        }
    }
}

impl std::error::Error for CredentialsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CredentialsError::Read { source, .. } => Some(source),
            CredentialsError::Pem { source, .. } => Some(source),
            CredentialsError::BadCa(e) | CredentialsError::Key(e) => Some(e),
            CredentialsError::Identity(e) => Some(e),
            _ => None,
        }
    }
}
