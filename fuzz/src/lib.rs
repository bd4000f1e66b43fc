//! The bodies of the fuzz targets, as plain functions of the input bytes.
//!
//! Each `fuzz_targets/NAME.rs` calls `NAME` here; the seed corpus in
//! `corpus/NAME/` also runs through the same functions in
//! `mesh-proxy/tests/fuzz_corpus.rs` (which includes this file), so a crash
//! found once stays a regression test. The oracle is "no panic, and the
//! invariants asserted here hold".

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::path::Path;

use http::{HeaderName, Request};
use mesh_route::matching::RouteMatcher;
use mesh_route::{HeaderMatch, HttpMatch, QueryParamMatch, StringMatch};
use mesh_tls::SpiffeId;

/// Config loading and validation: the YAML text through `load_str`, which is
/// what `mesh-proxy validate` and `run` use for each file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = mesh_proxy::config::load_str(Path::new("fuzz.yaml"), text);
    // Diagnostics must render (positions inside the text).
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
    if loaded.config.is_some() {
        assert_eq!(loaded.errors().count(), 0, "a config with errors loaded");
    }
}

/// Route matching: match blocks decoded from the input, compiled, and
/// matched against a request also decoded from it.
///
/// Layout: lines (split on `\n`). Line 0 is the request target (path and
/// query), line 1 the `Host`, line 2 the method, then `name: value` header
/// lines until an empty line; every following line is one condition:
/// its first byte picks the field and the kind of match, the rest is the
/// string (a header or query condition is `name=value`). A `|` line starts a
/// new block.
pub fn route_match(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let host = lines.next().unwrap_or("");
    let method = lines.next().unwrap_or("GET");
    let mut req = Request::builder().method(method).uri(target);
    if !host.is_empty() {
        req = req.header("host", host);
    }
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            req = req.header(name.trim(), value.trim());
        }
    }
    let mut blocks = vec![HttpMatch::default()];
    for line in lines.by_ref().take(64) {
        if line == "|" {
            blocks.push(HttpMatch::default());
            continue;
        }
        let Some((&selector, rest)) = line.as_bytes().split_first() else {
            continue;
        };
        let rest = String::from_utf8_lossy(rest).into_owned();
        let string = |s: String| match selector % 3 {
            0 => StringMatch::Exact(s),
            1 => StringMatch::Prefix(s),
            _ => StringMatch::Regex(s),
        };
        let block = blocks.last_mut().expect("never empty");
        match (selector / 3) % 8 {
            0 => block.uri = Some(string(rest)),
            1 => block.method = Some(string(rest)),
            2 => block.authority = Some(string(rest)),
            3 => block.scheme = Some(string(rest)),
            4 | 5 => {
                let (name, value) = rest.split_once('=').unwrap_or((rest.as_str(), ""));
                if let Ok(name) = HeaderName::try_from(name) {
                    let value = (!value.is_empty()).then(|| string(value.to_owned()));
                    let m = HeaderMatch { name, value };
                    if (selector / 3) % 8 == 4 {
                        block.headers.push(m);
                    } else {
                        block.without_headers.push(m);
                    }
                }
            }
            6 => {
                let (name, value) = rest.split_once('=').unwrap_or((rest.as_str(), ""));
                block.query_params.push(QueryParamMatch {
                    name: name.to_owned(),
                    value: string(value.to_owned()),
                });
            }
            _ => block.ignore_uri_case = !block.ignore_uri_case,
        }
    }
    let Ok(matcher) = RouteMatcher::new(&blocks) else {
        return;
    };
    let Ok(req) = req.body(()) else {
        return;
    };
    if let Some(i) = matcher.find(&req) {
        assert!(i < blocks.len());
        assert!(matcher.matches(&req));
    }
}

/// The SPIFFE ID parser: whatever it accepts is Istio's form and survives a
/// round trip.
pub fn spiffe_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = SpiffeId::parse(text) else {
        return;
    };
    assert_eq!(id.as_str(), text);
    assert!(!id.trust_domain().is_empty());
    assert!(!id.namespace().is_empty() && !id.service_account().is_empty());
    assert_eq!(
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            id.trust_domain(),
            id.namespace(),
            id.service_account()
        ),
        text
    );
    assert_eq!(id.principal(), &text["spiffe://".len()..]);
    assert_eq!(SpiffeId::parse(id.as_str()).ok().as_ref(), Some(&id));
}

/// The HTTP/1 framing guard over the input as a client's byte stream (the
/// first byte sets the read size): it ends, and passes on at most what it was
/// given plus one refusal.
pub fn framing(data: &[u8]) {
    let out = mesh_proxy::fuzz_guard(data).expect("the framing guard never came to an end");
    assert!(out.len() <= mesh_proxy::fuzz_guard_bound(data.len()));
}

/// Path normalisation: the result starts with `/`, has no empty, `.` or `..`
/// segment, and is a fixed point.
pub fn path_normalize(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = mesh_proxy::fuzz_normalize(path) else {
        return;
    };
    if !path.starts_with('/') {
        assert_eq!(out, path);
        return;
    }
    assert!(out.starts_with('/'), "{path:?} -> {out:?}");
    assert!(!out.contains("//"), "{path:?} -> {out:?}");
    assert!(
        !out.split('/').any(|s| s == "." || s == ".."),
        "{path:?} -> {out:?}"
    );
    assert_eq!(
        mesh_proxy::fuzz_normalize(&out).as_deref(),
        Ok(out.as_str()),
        "not a fixed point: {path:?}"
    );
}
