//! Istio `PeerAuthentication` modes: what an inbound listener accepts.

use std::fmt;
use std::str::FromStr;

/// What an inbound port accepts (Istio `PeerAuthentication.mtls.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PeerAuthMode {
    /// mTLS only: a client certificate from the trust domain is required;
    /// plaintext connections are closed.
    Strict,
    /// Both mTLS and plaintext on the same port, told apart by the first byte
    /// (a TLS handshake record). Istio's default when nothing is configured.
    #[default]
    Permissive,
    /// Plaintext only; no TLS is attempted.
    Disable,
}

impl PeerAuthMode {
    /// The Istio spelling: `STRICT`, `PERMISSIVE` or `DISABLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerAuthMode::Strict => "STRICT",
            PeerAuthMode::Permissive => "PERMISSIVE",
            PeerAuthMode::Disable => "DISABLE",
        }
    }
}

impl fmt::Display for PeerAuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An unknown `PeerAuthentication` mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMode(pub String);

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown mTLS mode {:?} (expected STRICT, PERMISSIVE, DISABLE or UNSET)",
            self.0
        )
    }
}

impl std::error::Error for UnknownMode {}

impl FromStr for PeerAuthMode {
    type Err = UnknownMode;

    /// Parses Istio's names, case-insensitively. `UNSET` (no parent policy)
    /// is `PERMISSIVE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "STRICT" => Ok(PeerAuthMode::Strict),
            "PERMISSIVE" | "UNSET" => Ok(PeerAuthMode::Permissive),
            "DISABLE" => Ok(PeerAuthMode::Disable),
            _ => Err(UnknownMode(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_names() {
        assert_eq!("STRICT".parse(), Ok(PeerAuthMode::Strict));
        assert_eq!("permissive".parse(), Ok(PeerAuthMode::Permissive));
        assert_eq!("UNSET".parse(), Ok(PeerAuthMode::Permissive));
        assert_eq!("DISABLE".parse(), Ok(PeerAuthMode::Disable));
        assert!("MUTUAL".parse::<PeerAuthMode>().is_err());
        assert_eq!(PeerAuthMode::default(), PeerAuthMode::Permissive);
        assert_eq!(PeerAuthMode::Strict.to_string(), "STRICT");
    }
}
