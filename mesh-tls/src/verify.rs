//! rustls hooks reading the [`CredentialStore`] on every handshake: the
//! certificate resolvers and the SPIFFE-aware verifiers.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use crate::identity::{IdentityError, SPIFFE_SCHEME, SpiffeId};
use crate::rotation::CredentialStore;

/// Presents the store's current certificate, as server and as client.
#[derive(Debug)]
pub(crate) struct StoreResolver(pub(crate) CredentialStore);

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.guard().certified.clone())
    }
}

impl ResolvesClientCert for StoreResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.guard().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Describes a handshake I/O error, showing our verifiers' refusals with their
/// own message (rustls prints `Other` errors with `Debug`).
pub(crate) fn describe_handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        _ => e.to_string(),
    }
}

fn refuse(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Server side: a client certificate is required, must chain to the store's
/// roots and carry one SPIFFE ID of our trust domain.
#[derive(Debug)]
pub(crate) struct SpiffeClientVerifier(pub(crate) CredentialStore);

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Workloads hold one certificate; hints would only help pick among several.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let creds = self.0.guard();
        let verified = creds
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = SpiffeId::from_certificate(end_entity).map_err(refuse)?;
        let ours = creds.id.trust_domain();
        if id.trust_domain() != ours {
            return Err(refuse(IdentityError::TrustDomainMismatch {
                expected: ours.to_owned(),
                found: id.trust_domain().to_owned(),
            }));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.0, Tls::V12, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.0, Tls::V13, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .guard()
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Which TLS version's handshake signature is checked.
#[derive(Clone, Copy)]
enum Tls {
    V12,
    V13,
}

/// Checks a handshake signature with the algorithms of the crypto provider in
/// force (both verifiers share this; the provider follows rotation).
fn verify_signature(
    store: &CredentialStore,
    version: Tls,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let creds = store.guard();
    let algorithms = &creds.provider.signature_verification_algorithms;
    match version {
        Tls::V12 => rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms),
        Tls::V13 => rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms),
    }
}

/// The server's identity was not one the client expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnexpectedServerIdentity {
    /// The identity the server presented.
    pub found: String,
    /// The identities that were acceptable.
    pub expected: Vec<String>,
}

impl fmt::Display for UnexpectedServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server identity {} is not in subjectAltNames {:?}",
            self.found, self.expected
        )
    }
}

impl std::error::Error for UnexpectedServerIdentity {}

/// Client side: the server's chain must lead to the store's roots (DNS names
/// are not checked: mesh certificates carry only a SPIFFE ID); its SPIFFE ID
/// must be one of `expected` (DestinationRule `subjectAltNames`) or, when
/// none are configured, belong to our trust domain.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    pub(crate) store: CredentialStore,
    pub(crate) expected: Arc<[String]>,
}

/// Normalises a `subjectAltNames` entry to a full `spiffe://` URI.
pub(crate) fn normalise_san(san: &str) -> String {
    if san.starts_with(SPIFFE_SCHEME) {
        san.to_owned()
    } else {
        format!("{SPIFFE_SCHEME}{san}")
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let creds = self.store.guard();
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &creds.roots,
            intermediates,
            now,
            creds.provider.signature_verification_algorithms.all,
        )?;
        let id = SpiffeId::from_certificate(end_entity).map_err(refuse)?;
        if self.expected.is_empty() {
            let ours = creds.id.trust_domain();
            if id.trust_domain() != ours {
                return Err(refuse(IdentityError::TrustDomainMismatch {
                    expected: ours.to_owned(),
                    found: id.trust_domain().to_owned(),
                }));
            }
        } else if !self.expected.iter().any(|san| san == id.as_str()) {
            return Err(refuse(UnexpectedServerIdentity {
                found: id.to_string(),
                expected: self.expected.to_vec(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.store, Tls::V12, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.store, Tls::V13, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store
            .guard()
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
