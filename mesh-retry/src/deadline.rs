//! A deadline from the caller: `grpc-timeout`, or a header named in config.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

/// `grpc-timeout`, the gRPC client's deadline.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Reads a timeout value: gRPC's form (`1-8` digits and a unit, `H` `M` `S`
/// `m` `u` `n`: `"250m"` is 250 ms), or a bare integer of milliseconds (the
/// form of Envoy's `x-envoy-upstream-rq-timeout-ms`). Anything else is `None`:
/// a malformed deadline is ignored, never an error.
///
/// ```
/// use std::time::Duration;
/// use mesh_retry::deadline::parse_timeout;
///
/// assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
/// assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
/// assert_eq!(parse_timeout(b"1500"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_timeout(b"soon"), None);
/// ```
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (digits, unit) = match value.last()? {
        b'0'..=b'9' => (value, None),
        u => (&value[..value.len() - 1], Some(*u)),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if unit.is_some() && digits.len() > 8 {
        return None; // gRPC allows at most 8 digits
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        None | Some(b'm') => Duration::from_millis(n),
        Some(b'H') => Duration::from_secs(n.checked_mul(3600)?),
        Some(b'M') => Duration::from_secs(n.checked_mul(60)?),
        Some(b'S') => Duration::from_secs(n),
        Some(b'u') => Duration::from_micros(n),
        Some(b'n') => Duration::from_nanos(n),
        Some(_) => return None,
    })
}

/// The caller's deadline in `headers[name]`, if present and readable.
pub fn from_headers(headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
    headers.get(name).and_then(|v| parse_timeout(v.as_bytes()))
}

/// [`from_headers`] for the retry layer's hot path. http hashes a header name
/// byte by byte, so on a map of a few headers comparing names is cheaper
/// than a lookup, and the common miss hashes nothing. Same answer: the first
/// value of `name`.
pub(crate) fn caller_timeout(headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
    /// Up to this many names, scan; past it, hash.
    const SCAN: usize = 16;
    if headers.keys_len() > SCAN {
        return from_headers(headers, name);
    }
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| parse_timeout(v.as_bytes()))
}

/// The effective overall timeout of a request: the configured one,
/// shortened (never lengthened) by the caller's deadline in `headers[name]`
/// (when a header is named). Either alone applies.
#[inline]
pub(crate) fn effective(
    configured: Option<Duration>,
    name: Option<&HeaderName>,
    headers: &HeaderMap,
) -> Option<Duration> {
    shorter(configured, name.and_then(|n| caller_timeout(headers, n)))
}

/// The shorter of two optional timeouts; either alone applies.
#[inline]
fn shorter(configured: Option<Duration>, caller: Option<Duration>) -> Option<Duration> {
    match (configured, caller) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_units() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout(b"9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_timeout(b"123456789m"), None, "9 digits");
        assert_eq!(parse_timeout(b""), None);
        assert_eq!(parse_timeout(b"m"), None);
        assert_eq!(parse_timeout(b"-5m"), None);
        assert_eq!(parse_timeout(b"5x"), None);
        assert_eq!(parse_timeout(b"99999999999999999999"), None, "overflow");
    }

    #[test]
    fn the_scan_answers_as_the_lookup_does() {
        let name = HeaderName::from_static("x-deadline");
        let mut small = HeaderMap::new();
        assert_eq!(caller_timeout(&small, &name), None);
        small.insert("accept", "*/*".parse().unwrap());
        assert_eq!(caller_timeout(&small, &name), None);
        small.append(&name, "250m".parse().unwrap());
        small.append(&name, "1S".parse().unwrap());
        assert_eq!(
            caller_timeout(&small, &name),
            Some(Duration::from_millis(250)),
            "the first value"
        );
        assert_eq!(caller_timeout(&small, &name), from_headers(&small, &name));
        let mut big = small.clone();
        for i in 0..20 {
            big.insert(
                HeaderName::try_from(format!("x-filler-{i}")).unwrap(),
                "x".parse().unwrap(),
            );
        }
        assert!(big.keys_len() > 16);
        assert_eq!(
            caller_timeout(&big, &name),
            Some(Duration::from_millis(250))
        );
        big.remove(&name);
        assert_eq!(caller_timeout(&big, &name), None);
    }

    #[test]
    fn caller_shortens_never_lengthens() {
        let s = Duration::from_secs;
        assert_eq!(shorter(Some(s(5)), Some(s(1))), Some(s(1)));
        assert_eq!(shorter(Some(s(5)), Some(s(10))), Some(s(5)));
        assert_eq!(shorter(None, Some(s(10))), Some(s(10)));
        assert_eq!(shorter(Some(s(5)), None), Some(s(5)));
        assert_eq!(shorter(None, None), None);
    }
}
