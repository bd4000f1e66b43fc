//! SPIFFE workload identities: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Istio carries a workload's identity as the single `spiffe://` URI SAN of its
//! X.509 certificate. [`SpiffeId`] parses and validates such an ID;
//! [`SpiffeId::from_certificate`] reads it from a DER certificate, with a
//! deterministic rule: exactly one `spiffe://` URI SAN, and it must be a valid
//! ID (other URI SANs are ignored, two SPIFFE IDs are refused).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use mesh_core::context::PeerIdentity;
use x509_parser::extensions::GeneralName;

/// The URI scheme of SPIFFE IDs, `spiffe://`.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// Istio's default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The longest SPIFFE ID accepted (the SPIFFE spec's URI limit).
const MAX_LEN: usize = 2048;

/// A validated Istio workload identity,
/// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
///
/// ```
/// use mesh_tls::SpiffeId;
///
/// let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/web".parse()?;
/// assert_eq!(id.trust_domain(), "cluster.local");
/// assert_eq!(id.namespace(), "default");
/// assert_eq!(id.service_account(), "web");
/// // Istio's principal (AuthorizationPolicy `principals`) has no scheme.
/// assert_eq!(id.principal(), "cluster.local/ns/default/sa/web");
/// assert!("spiffe://cluster.local/ns/default".parse::<SpiffeId>().is_err());
/// # Ok::<(), mesh_tls::IdentityError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    uri: Arc<str>,
    // Byte offsets into `uri`: end of trust domain, start/end of namespace, start of sa.
    td_end: usize,
    ns: (usize, usize),
    sa_start: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID of Istio's form.
    pub fn parse(s: &str) -> Result<SpiffeId, IdentityError> {
        if s.len() > MAX_LEN {
            return Err(IdentityError::TooLong);
        }
        let rest = s
            .strip_prefix(SPIFFE_SCHEME)
            .ok_or(IdentityError::NotSpiffe)?;
        let (td, path) = rest.split_once('/').ok_or(IdentityError::MissingPath)?;
        validate_trust_domain(td)?;
        let mut parts = path.split('/');
        let (Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(IdentityError::NotWorkloadPath);
        };
        validate_segment(ns)?;
        validate_segment(sa)?;
        let td_end = SPIFFE_SCHEME.len() + td.len();
        let ns_start = td_end + "/ns/".len();
        let ns_end = ns_start + ns.len();
        Ok(SpiffeId {
            uri: s.into(),
            td_end,
            ns: (ns_start, ns_end),
            sa_start: ns_end + "/sa/".len(),
        })
    }

    /// Builds the ID of service account `sa` in namespace `ns` of `trust_domain`.
    pub fn new(trust_domain: &str, ns: &str, sa: &str) -> Result<SpiffeId, IdentityError> {
        SpiffeId::parse(&format!("{SPIFFE_SCHEME}{trust_domain}/ns/{ns}/sa/{sa}"))
    }

    /// The full ID, `spiffe://…`.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.uri[SPIFFE_SCHEME.len()..self.td_end]
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.uri[self.ns.0..self.ns.1]
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.uri[self.sa_start..]
    }

    /// The ID without `spiffe://`, as Istio writes `principals`.
    pub fn principal(&self) -> &str {
        &self.uri[SPIFFE_SCHEME.len()..]
    }

    /// The ID as mesh-core's request extension.
    pub fn to_peer_identity(&self) -> PeerIdentity {
        PeerIdentity(self.uri.clone())
    }

    /// Reads the SPIFFE ID from a DER X.509 certificate: its single
    /// `spiffe://` URI SAN.
    pub fn from_certificate(der: &[u8]) -> Result<SpiffeId, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?
            .ok_or(IdentityError::NoSpiffeId)?;
        let mut found = None;
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && uri.starts_with(SPIFFE_SCHEME)
            {
                if found.is_some() {
                    return Err(IdentityError::MultipleSpiffeIds);
                }
                found = Some(SpiffeId::parse(uri)?);
            }
        }
        found.ok_or(IdentityError::NoSpiffeId)
    }
}

/// Validates a trust domain name: lowercase letters, digits, `.`, `-`, `_`.
pub(crate) fn validate_trust_domain(td: &str) -> Result<(), IdentityError> {
    let ok = !td.is_empty()
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidTrustDomain(td.to_owned()))
    }
}

fn validate_segment(seg: &str) -> Result<(), IdentityError> {
    let ok = !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidSegment(seg.to_owned()))
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpiffeId").field(&&*self.uri).finish()
    }
}

impl From<SpiffeId> for PeerIdentity {
    fn from(id: SpiffeId) -> PeerIdentity {
        PeerIdentity(id.uri)
    }
}

/// Why a SPIFFE ID or a certificate's identity was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The ID does not start with `spiffe://`.
    NotSpiffe,
    /// The ID is longer than 2048 bytes.
    TooLong,
    /// The ID has a trust domain but no path.
    MissingPath,
    /// The trust domain is empty or has characters outside `[a-z0-9._-]`.
    InvalidTrustDomain(String),
    /// The path is not `/ns/<namespace>/sa/<service-account>`.
    NotWorkloadPath,
    /// A path segment is empty, `.`, `..` or has characters outside `[A-Za-z0-9._-]`.
    InvalidSegment(String),
    /// The certificate could not be parsed.
    BadCertificate(String),
    /// The certificate has no `spiffe://` URI SAN.
    NoSpiffeId,
    /// The certificate has more than one `spiffe://` URI SAN.
    MultipleSpiffeIds,
    /// The identity belongs to another trust domain.
    TrustDomainMismatch {
        /// The trust domain required.
        expected: String,
        /// The trust domain found.
        found: String,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::NotSpiffe => f.write_str("not a SPIFFE ID (no spiffe:// scheme)"),
            IdentityError::TooLong => f.write_str("SPIFFE ID longer than 2048 bytes"),
            IdentityError::MissingPath => f.write_str("SPIFFE ID has no path"),
            IdentityError::InvalidTrustDomain(td) => write!(f, "invalid trust domain {td:?}"),
            IdentityError::NotWorkloadPath => {
                f.write_str("SPIFFE ID path is not /ns/<namespace>/sa/<service-account>")
            }
            IdentityError::InvalidSegment(s) => write!(f, "invalid SPIFFE ID path segment {s:?}"),
            IdentityError::BadCertificate(e) => write!(f, "unparsable certificate: {e}"),
            IdentityError::NoSpiffeId => f.write_str("certificate has no spiffe:// URI SAN"),
            IdentityError::MultipleSpiffeIds => {
                f.write_str("certificate has more than one spiffe:// URI SAN")
            }
            IdentityError::TrustDomainMismatch { expected, found } => {
                write!(f, "trust domain {found:?} is not {expected:?}")
            }
        }
    }
}

impl std::error::Error for IdentityError {}

/// The SHA-256 of a peer's DER certificate: Envoy's `Hash=` element of
/// `x-forwarded-client-cert`. Put in the request extensions by the acceptor.
///
/// ```
/// let hash = mesh_tls::CertificateHash::of_der(b"not really a certificate");
/// assert_eq!(hash.to_hex().len(), 64);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificateHash(pub [u8; 32]);

impl CertificateHash {
    /// Hashes DER bytes with SHA-256 (ring, through rustls' provider).
    pub fn of_der(der: &[u8]) -> CertificateHash {
        let mut out = [0u8; 32];
        if let rustls::SupportedCipherSuite::Tls13(suite) =
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        {
            let digest = suite.common.hash_provider.hash(der);
            let bytes = digest.as_ref();
            if bytes.len() == out.len() {
                out.copy_from_slice(bytes);
            }
        }
        CertificateHash(out)
    }

    /// Lowercase hex, as in `x-forwarded-client-cert: Hash=…`.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl fmt::Display for CertificateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.to_hex())
    }
}

impl fmt::Debug for CertificateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_ids() {
        let id = SpiffeId::parse("spiffe://example.org/ns/prod-1/sa/api_v2").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.namespace(), "prod-1");
        assert_eq!(id.service_account(), "api_v2");
        assert_eq!(id.principal(), "example.org/ns/prod-1/sa/api_v2");
        assert_eq!(id.to_string(), "spiffe://example.org/ns/prod-1/sa/api_v2");
        assert_eq!(
            SpiffeId::new("example.org", "prod-1", "api_v2").unwrap(),
            id
        );
    }

    #[test]
    fn refuses_malformed_ids() {
        let cases = [
            ("http://cluster.local/ns/a/sa/b", IdentityError::NotSpiffe),
            ("spiffe://cluster.local", IdentityError::MissingPath),
            (
                "spiffe:///ns/a/sa/b",
                IdentityError::InvalidTrustDomain(String::new()),
            ),
            (
                "spiffe://Cluster.local/ns/a/sa/b",
                IdentityError::InvalidTrustDomain("Cluster.local".into()),
            ),
            ("spiffe://td/ns/a", IdentityError::NotWorkloadPath),
            (
                "spiffe://td/ns/a/sa/b/extra",
                IdentityError::NotWorkloadPath,
            ),
            ("spiffe://td/sa/a/ns/b", IdentityError::NotWorkloadPath),
            (
                "spiffe://td/ns//sa/b",
                IdentityError::InvalidSegment(String::new()),
            ),
            (
                "spiffe://td/ns/../sa/b",
                IdentityError::InvalidSegment("..".into()),
            ),
            (
                "spiffe://td/ns/a b/sa/b",
                IdentityError::InvalidSegment("a b".into()),
            ),
            (
                "spiffe://td/ns/a/sa/b?x=1",
                IdentityError::InvalidSegment("b?x=1".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input), Err(want), "{input}");
        }
        let long = format!("spiffe://td/ns/a/sa/{}", "b".repeat(MAX_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(IdentityError::TooLong));
    }

    #[test]
    fn hash_is_sha256() {
        // SHA-256("abc")
        assert_eq!(
            CertificateHash::of_der(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest::proptest! {
        #[test]
        fn valid_ids_roundtrip(td in "[a-z0-9][a-z0-9.-]{0,20}", ns in "[a-zA-Z0-9_-]{1,20}", sa in "[a-zA-Z0-9_-]{1,20}") {
            let id = SpiffeId::new(&td, &ns, &sa).unwrap();
            proptest::prop_assert_eq!(id.trust_domain(), td.as_str());
            proptest::prop_assert_eq!(id.namespace(), ns.as_str());
            proptest::prop_assert_eq!(id.service_account(), sa.as_str());
            proptest::prop_assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id);
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = SpiffeId::parse(&s);
            let _ = SpiffeId::parse(&format!("spiffe://{s}"));
        }
    }
}
