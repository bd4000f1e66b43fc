//! Small shared pieces: percentages as fractions per million, response flags,
//! authority edits.

use http::header::HOST;
use http::uri::{Authority, Uri};
use http::{HeaderValue, Request, Response};
use mesh_core::{RESPONSE_FLAGS_HEADER, ResponseFlag, ResponseFlags};
use rand::RngExt;

use crate::config::{ConfigError, ConfigErrorKind};

const MILLION: u32 = 1_000_000;

/// A share of requests in millionths, as Istio programs Envoy
/// (`FractionalPercent` with denominator `MILLION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fraction(u32);

impl Fraction {
    pub(crate) const ALL: Fraction = Fraction(MILLION);

    /// `percent` (0.0–100.0) as a fraction; an error outside that range or NaN.
    pub(crate) fn from_percent(percent: f64, field: &'static str) -> Result<Self, ConfigError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ConfigErrorKind::Percentage {
                field,
                value: percent,
            }
            .into());
        }
        // In range, so the product is within 0..=1e6 and the cast is exact enough.
        Ok(Fraction((percent * 10_000.0).round() as u32))
    }

    /// `percent`, clamped into 0–100 (NaN: 0), for layers built without checks.
    pub(crate) fn clamped(percent: f64) -> Self {
        if percent.is_nan() {
            return Fraction(0);
        }
        Fraction((percent.clamp(0.0, 100.0) * 10_000.0).round() as u32)
    }

    pub(crate) fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// One draw: whether this request falls in the fraction.
    #[inline]
    pub(crate) fn sample<R: rand::Rng + ?Sized>(self, rng: &mut R) -> bool {
        match self.0 {
            0 => false,
            n if n >= MILLION => true,
            n => rng.random_range(0..MILLION) < n,
        }
    }
}

/// Adds `flag` to the response's [`ResponseFlags`] extension and header.
pub(crate) fn add_response_flag<B>(res: &mut Response<B>, flag: ResponseFlag) {
    let from_header = res
        .headers()
        .get(RESPONSE_FLAGS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<ResponseFlags>().ok())
        .unwrap_or_default();
    let from_ext = res
        .extensions()
        .get::<ResponseFlags>()
        .copied()
        .unwrap_or_default();
    let flags = from_header.union(from_ext).with(flag);
    if let Ok(v) = HeaderValue::from_str(&flags.to_string()) {
        res.headers_mut().insert(RESPONSE_FLAGS_HEADER, v);
    }
    res.extensions_mut().insert(flags);
}

/// The request's authority: the URI's (HTTP/2 `:authority`, absolute-form),
/// else the `Host` header.
pub(crate) fn authority_of<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(HOST).and_then(|v| v.to_str().ok()),
    }
}

/// Sets the authority: the `Host` header, and the URI's authority when the URI
/// has one. Returns false (and changes nothing) if `authority` is not valid.
pub(crate) fn set_authority<B>(req: &mut Request<B>, authority: &str) -> bool {
    let Ok(value) = HeaderValue::from_str(authority) else {
        return false;
    };
    if req.uri().authority().is_some() {
        let Ok(auth) = authority.parse::<Authority>() else {
            return false;
        };
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.authority = Some(auth);
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return false,
        }
    }
    req.headers_mut().insert(HOST, value);
    true
}

/// `host-shadow`, keeping a port: `foo:8080` → `foo-shadow:8080`, as Envoy's
/// `shadowAppendedHost`.
pub(crate) fn shadow_authority(authority: &str) -> String {
    if let Some((host, port)) = authority.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && (!host.contains(':') || host.ends_with(']'))
    {
        return format!("{host}-shadow:{port}");
    }
    format!("{authority}-shadow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_from_percentages() {
        assert_eq!(Fraction::from_percent(100.0, "x").unwrap(), Fraction::ALL);
        assert!(Fraction::from_percent(0.0, "x").unwrap().is_zero());
        assert_eq!(Fraction::from_percent(0.0001, "x").unwrap(), Fraction(1));
        assert!(Fraction::from_percent(150.0, "x").is_err());
        assert!(Fraction::from_percent(-1.0, "x").is_err());
        assert!(Fraction::from_percent(f64::NAN, "x").is_err());
        assert_eq!(Fraction::clamped(250.0), Fraction::ALL);
        assert!(Fraction::clamped(f64::NAN).is_zero());
        let mut rng = rand::rng();
        assert!((0..1000).all(|_| Fraction::ALL.sample(&mut rng)));
        assert!((0..1000).all(|_| !Fraction(0).sample(&mut rng)));
    }

    #[test]
    fn shadow_host_keeps_the_port() {
        assert_eq!(shadow_authority("reviews"), "reviews-shadow");
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_authority("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_authority("::1"), "::1-shadow");
    }

    #[test]
    fn authority_is_set_in_uri_and_host() {
        let mut req = Request::builder().uri("http://a:1/p?q").body(()).unwrap();
        assert!(set_authority(&mut req, "b:2"));
        assert_eq!(req.uri().to_string(), "http://b:2/p?q");
        assert_eq!(req.headers()[HOST], "b:2");
        let mut req = Request::builder()
            .uri("/p")
            .header(HOST, "a")
            .body(())
            .unwrap();
        assert!(set_authority(&mut req, "c"));
        assert_eq!(authority_of(&req), Some("c"));
        assert!(!set_authority(&mut req, "bad host\n"));
    }

    #[test]
    fn flags_merge_with_existing_ones() {
        let mut res = Response::new(());
        res.headers_mut()
            .insert(RESPONSE_FLAGS_HEADER, HeaderValue::from_static("UT"));
        add_response_flag(&mut res, ResponseFlag::DelayInjected);
        assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], "UT,DI");
        let flags = res.extensions().get::<ResponseFlags>().unwrap();
        assert!(flags.contains(ResponseFlag::DelayInjected));
    }
}
