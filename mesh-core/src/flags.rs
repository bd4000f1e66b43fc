//! Envoy's response flags: the short codes (`UH`, `UO`, `UT`…) that access logs
//! and metrics use to say *why* a response is what it is.
//!
//! Several flags can hold at once (a fault delay followed by a timeout is
//! `DI,UT`), so [`ResponseFlags`] is a small copyable set. It is displayed the
//! way Envoy prints `%RESPONSE_FLAGS%`: comma separated, `-` when empty.

use std::fmt;
use std::str::FromStr;

use http::HeaderName;

/// The response header that carries the flags of a response the mesh produced or
/// shaped, so access logs, metrics and tests can read them.
pub const RESPONSE_FLAGS_HEADER: HeaderName = HeaderName::from_static("x-mesh-response-flags");

macro_rules! flags {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, )*) => {
        /// One Envoy response flag.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum ResponseFlag {
            $( $(#[$doc])* $name, )*
        }

        impl ResponseFlag {
            /// Every flag, in Envoy's order.
            pub const ALL: &'static [ResponseFlag] = &[$(ResponseFlag::$name,)*];

            /// The short code Envoy prints, such as `"UH"`.
            pub const fn code(self) -> &'static str {
                match self { $(ResponseFlag::$name => $code,)* }
            }
        }

        impl FromStr for ResponseFlag {
            type Err = UnknownFlag;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($code => Ok(ResponseFlag::$name),)*
                    _ => Err(UnknownFlag(())),
                }
            }
        }
    };
}

flags! {
    /// `UH`: no healthy upstream endpoint (503).
    NoHealthyUpstream = "UH",
    /// `UF`: the upstream connection failed (503).
    UpstreamConnectionFailure = "UF",
    /// `UO`: upstream overflow, a circuit breaker refused the request (503).
    UpstreamOverflow = "UO",
    /// `NR`: no route matched (404).
    NoRouteFound = "NR",
    /// `URX`: the retry limit was reached.
    UpstreamRetryLimitExceeded = "URX",
    /// `NC`: the route's cluster is not known.
    NoClusterFound = "NC",
    /// `UT`: the upstream request timed out (504).
    UpstreamRequestTimeout = "UT",
    /// `LR`: the connection was reset locally (503).
    LocalReset = "LR",
    /// `UR`: the upstream reset the stream or connection (503).
    UpstreamRemoteReset = "UR",
    /// `UC`: the upstream connection terminated (503).
    UpstreamConnectionTermination = "UC",
    /// `DI`: the request was delayed by fault injection.
    DelayInjected = "DI",
    /// `FI`: the request was aborted by fault injection.
    FaultInjected = "FI",
    /// `RL`: rate limited locally (429).
    RateLimited = "RL",
    /// `UAEX`: denied by authorization.
    UnauthorizedExternalService = "UAEX",
    /// `DC`: the downstream connection terminated.
    DownstreamConnectionTermination = "DC",
    /// `SI`: stream idle timeout.
    StreamIdleTimeout = "SI",
    /// `DPE`: downstream protocol error.
    DownstreamProtocolError = "DPE",
    /// `UPE`: upstream protocol error (502).
    UpstreamProtocolError = "UPE",
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.code())
    }
}

/// The error of parsing a string that is not a known response flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFlag(());

impl fmt::Display for UnknownFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("unknown response flag")
    }
}

impl std::error::Error for UnknownFlag {}

/// A set of [`ResponseFlag`]s; `Copy`, one machine word.
///
/// ```
/// use mesh_core::{ResponseFlag, ResponseFlags};
///
/// let flags = ResponseFlags::from(ResponseFlag::DelayInjected).with(ResponseFlag::UpstreamRequestTimeout);
/// assert_eq!(flags.to_string(), "UT,DI");
/// assert_eq!("UT,DI".parse::<ResponseFlags>().unwrap(), flags);
/// assert_eq!(ResponseFlags::EMPTY.to_string(), "-");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u32);

impl ResponseFlags {
    /// No flag.
    pub const EMPTY: ResponseFlags = ResponseFlags(0);

    /// The set with `flag` added.
    #[must_use]
    pub const fn with(self, flag: ResponseFlag) -> Self {
        ResponseFlags(self.0 | (1 << flag as u8))
    }

    /// Adds `flag` in place.
    pub fn insert(&mut self, flag: ResponseFlag) {
        *self = self.with(flag);
    }

    /// Whether `flag` is in the set.
    pub const fn contains(self, flag: ResponseFlag) -> bool {
        self.0 & (1 << flag as u8) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of two sets.
    #[must_use]
    pub const fn union(self, other: ResponseFlags) -> Self {
        ResponseFlags(self.0 | other.0)
    }

    /// The flags in the set, in Envoy's order.
    pub fn iter(self) -> impl Iterator<Item = ResponseFlag> {
        ResponseFlag::ALL
            .iter()
            .copied()
            .filter(move |f| self.contains(*f))
    }
}

impl From<ResponseFlag> for ResponseFlags {
    fn from(flag: ResponseFlag) -> Self {
        ResponseFlags::EMPTY.with(flag)
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, flag) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(flag.code())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseFlags({self})")
    }
}

impl FromStr for ResponseFlags {
    type Err = UnknownFlag;

    /// Parses Envoy's printed form: `-`, empty, or codes separated by commas.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "-" {
            return Ok(ResponseFlags::EMPTY);
        }
        s.split(',')
            .map(|code| code.trim().parse::<ResponseFlag>())
            .try_fold(ResponseFlags::EMPTY, |set, flag| Ok(set.with(flag?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_round_trips_through_its_code() {
        for flag in ResponseFlag::ALL {
            assert_eq!(flag.code().parse::<ResponseFlag>(), Ok(*flag));
            let set = ResponseFlags::from(*flag);
            assert_eq!(set.to_string(), flag.code());
            assert_eq!(set.to_string().parse::<ResponseFlags>(), Ok(set));
        }
        assert!(ResponseFlag::ALL.len() <= 32, "flags must fit the bit set");
    }

    #[test]
    fn sets_combine_and_print_in_envoy_order() {
        let mut set = ResponseFlags::EMPTY;
        set.insert(ResponseFlag::UpstreamRetryLimitExceeded);
        set.insert(ResponseFlag::NoHealthyUpstream);
        assert!(set.contains(ResponseFlag::NoHealthyUpstream));
        assert!(!set.contains(ResponseFlag::UpstreamOverflow));
        assert_eq!(set.to_string(), "UH,URX");
        assert_eq!(
            ResponseFlags::from(ResponseFlag::FaultInjected).union(set),
            "FI,URX,UH".parse().unwrap()
        );
    }

    #[test]
    fn unknown_codes_are_errors() {
        assert!("XX".parse::<ResponseFlag>().is_err());
        assert!("UH,nope".parse::<ResponseFlags>().is_err());
        assert_eq!("".parse::<ResponseFlags>(), Ok(ResponseFlags::EMPTY));
    }
}
