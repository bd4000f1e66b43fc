//! A compiled `match` list.

use std::cell::OnceCell;

use http::{HeaderMap, HeaderName, Request};

use super::CompiledString;
use crate::config::{ConfigError, ConfigErrorKind, HeaderMatch, HttpMatch};
use crate::util::authority_of;

/// The compiled `match` list of one route: matches a request when any block
/// does (an empty list matches everything). See the [module docs](crate::matching).
#[derive(Clone, Debug)]
pub struct RouteMatcher {
    blocks: Box<[BlockMatcher]>,
}

/// Header names and what their values must match (`None`: presence).
type HeaderMatchers = Box<[(HeaderName, Option<CompiledString>)]>;

/// One compiled `HTTPMatchRequest`.
#[derive(Clone, Debug)]
struct BlockMatcher {
    uri: Option<CompiledString>,
    ignore_uri_case: bool,
    scheme: Option<CompiledString>,
    method: Option<CompiledString>,
    authority: Option<CompiledString>,
    headers: HeaderMatchers,
    without_headers: HeaderMatchers,
    query_params: Box<[(Box<str>, CompiledString)]>,
}

/// What of a request the matchers read, computed at most once per request
/// however many routes are tried: the path always (every route has a URI
/// condition or none), the authority when a block asks for it.
pub(crate) struct View<'a, B> {
    req: &'a Request<B>,
    path: &'a [u8],
    authority: OnceCell<Option<&'a str>>,
}

impl<'a, B> View<'a, B> {
    /// A view of `req`.
    #[inline]
    pub(crate) fn new(req: &'a Request<B>) -> Self {
        View {
            req,
            path: req.uri().path().as_bytes(),
            authority: OnceCell::new(),
        }
    }

    fn authority(&self) -> Option<&'a str> {
        *self.authority.get_or_init(|| authority_of(self.req))
    }
}

impl RouteMatcher {
    /// Compiles a `match` list.
    pub fn new(blocks: &[HttpMatch]) -> Result<Self, ConfigError> {
        let blocks = blocks
            .iter()
            .map(BlockMatcher::compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteMatcher {
            blocks: blocks.into(),
        })
    }

    /// A matcher of every request.
    pub fn any() -> Self {
        RouteMatcher {
            blocks: Box::new([]),
        }
    }

    /// Whether the request matches.
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
        self.matches_view(&View::new(req))
    }

    /// Whether the request `view` shows matches (a router builds one view
    /// per request for all its routes).
    #[inline]
    pub(crate) fn matches_view<B>(&self, view: &View<'_, B>) -> bool {
        self.blocks.is_empty() || self.blocks.iter().any(|b| b.matches(view))
    }

    /// The index of the first block the request matches (`None` for an empty
    /// list too; see [`matches`](Self::matches)).
    pub fn find<B>(&self, req: &Request<B>) -> Option<usize> {
        let view = View::new(req);
        self.blocks.iter().position(|b| b.matches(&view))
    }

    /// How many blocks there are.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the list is empty (matches every request).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// Header keys Istio ignores in `headers` (they are pseudo-headers there).
fn ignored_header(name: &HeaderName) -> bool {
    matches!(name.as_str(), "uri" | "scheme" | "method" | "authority")
}

fn compile_headers(list: &[HeaderMatch]) -> Result<HeaderMatchers, ConfigError> {
    list.iter()
        .filter(|h| !ignored_header(&h.name))
        .map(|h| {
            let m = h.value.as_ref().map(CompiledString::compile).transpose()?;
            Ok((h.name.clone(), m))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Into::into)
}

impl BlockMatcher {
    fn compile(m: &HttpMatch) -> Result<Self, ConfigError> {
        let opt = |s: &Option<_>| s.as_ref().map(CompiledString::compile).transpose();
        let query_params = m
            .query_params
            .iter()
            .map(|q| {
                if q.name.is_empty() {
                    return Err(ConfigErrorKind::EmptyQueryParam.into());
                }
                Ok((q.name.as_str().into(), CompiledString::compile(&q.value)?))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(BlockMatcher {
            uri: opt(&m.uri)?,
            ignore_uri_case: m.ignore_uri_case,
            scheme: opt(&m.scheme)?,
            method: opt(&m.method)?,
            authority: opt(&m.authority)?,
            headers: compile_headers(&m.headers)?,
            without_headers: compile_headers(&m.without_headers)?,
            query_params: query_params.into(),
        })
    }

    #[inline]
    fn matches<B>(&self, view: &View<'_, B>) -> bool {
        let req = view.req;
        if let Some(uri) = &self.uri {
            let ok = if self.ignore_uri_case {
                uri.matches_ignore_case(view.path)
            } else {
                uri.matches(view.path)
            };
            if !ok {
                return false;
            }
        }
        if let Some(method) = &self.method
            && !method.matches(req.method().as_str().as_bytes())
        {
            return false;
        }
        if let Some(scheme) = &self.scheme {
            let s = req.uri().scheme_str().unwrap_or("http");
            if !scheme.matches(s.as_bytes()) {
                return false;
            }
        }
        if let Some(authority) = &self.authority {
            match view.authority() {
                Some(a) if authority.matches(a.as_bytes()) => {}
                _ => return false,
            }
        }
        if !self
            .headers
            .iter()
            .all(|(name, m)| header_matches(req.headers(), name, m.as_ref()))
        {
            return false;
        }
        if self
            .without_headers
            .iter()
            .any(|(name, m)| header_matches(req.headers(), name, m.as_ref()))
        {
            return false;
        }
        if !self.query_params.is_empty() {
            let query = req.uri().query().unwrap_or("");
            return self.query_params.iter().all(|(name, m)| {
                query_value(query, name).is_some_and(|v| m.matches(v.as_bytes()))
            });
        }
        true
    }
}

/// Whether header `name` is present and (when `m` is given) its value
/// matches; several values are joined with `,` first, as Envoy does.
fn header_matches(headers: &HeaderMap, name: &HeaderName, m: Option<&CompiledString>) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    let Some(m) = m else {
        return true;
    };
    match values.next() {
        None => m.matches(first.as_bytes()),
        Some(second) => {
            let mut joined = Vec::with_capacity(first.len() + second.len() + 1);
            joined.extend_from_slice(first.as_bytes());
            for v in std::iter::once(second).chain(values) {
                joined.push(b',');
                joined.extend_from_slice(v.as_bytes());
            }
            m.matches(&joined)
        }
    }
}

/// The first value of query parameter `name` (raw, not decoded); `?name`
/// alone has the value `""`.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}
