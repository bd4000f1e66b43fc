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
    blocks: Blocks,
}

/// The blocks, with the two common shapes (no block; one block, as a router
/// has per entry) held without a slice to walk.
#[derive(Clone, Debug)]
enum Blocks {
    Any,
    One(BlockMatcher),
    Many(Box<[BlockMatcher]>),
}

/// Header names and what their values must match (`None`: presence).
type HeaderMatchers = Box<[(HeaderName, Option<CompiledString>)]>;

/// One compiled `HTTPMatchRequest`: the path test, which most blocks have
/// and many have alone, and the other conditions when there are any (so a
/// path-only block costs one test and one null check).
#[derive(Clone, Debug)]
struct BlockMatcher {
    path: PathTest,
    rest: Option<Box<RestMatcher>>,
}

/// The `uri` condition, with `ignoreUriCase` folded in.
#[derive(Clone, Debug)]
enum PathTest {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    ExactIgnoreCase(Box<str>),
    PrefixIgnoreCase(Box<str>),
    /// A regex, which `ignoreUriCase` does not affect (as in Istio).
    Regex(CompiledString),
}

/// A block's conditions other than the path.
#[derive(Clone, Debug)]
struct RestMatcher {
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
        let mut blocks = blocks
            .iter()
            .map(BlockMatcher::compile)
            .collect::<Result<Vec<_>, _>>()?;
        let blocks = match blocks.len() {
            0 => Blocks::Any,
            1 => Blocks::One(blocks.remove(0)),
            _ => Blocks::Many(blocks.into()),
        };
        Ok(RouteMatcher { blocks })
    }

    /// A matcher of every request.
    pub fn any() -> Self {
        RouteMatcher {
            blocks: Blocks::Any,
        }
    }

    /// Whether the request matches.
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
        self.matches_view(&View::new(req))
    }

    /// Whether the request `view` shows matches (a router builds one view
    /// per request for all its routes).
    #[inline(always)]
    pub(crate) fn matches_view<B>(&self, view: &View<'_, B>) -> bool {
        match &self.blocks {
            Blocks::Any => true,
            Blocks::One(b) => b.matches(view),
            Blocks::Many(blocks) => blocks.iter().any(|b| b.matches(view)),
        }
    }

    /// The index of the first block the request matches (`None` for an empty
    /// list too; see [`matches`](Self::matches)).
    pub fn find<B>(&self, req: &Request<B>) -> Option<usize> {
        let view = View::new(req);
        match &self.blocks {
            Blocks::Any => None,
            Blocks::One(b) => b.matches(&view).then_some(0),
            Blocks::Many(blocks) => blocks.iter().position(|b| b.matches(&view)),
        }
    }

    /// How many blocks there are.
    pub fn len(&self) -> usize {
        match &self.blocks {
            Blocks::Any => 0,
            Blocks::One(_) => 1,
            Blocks::Many(blocks) => blocks.len(),
        }
    }

    /// Whether the list is empty (matches every request).
    pub fn is_empty(&self) -> bool {
        matches!(self.blocks, Blocks::Any)
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
        let path = match (opt(&m.uri)?, m.ignore_uri_case) {
            (None, _) => PathTest::Any,
            (Some(CompiledString::Exact(s)), false) => PathTest::Exact(s),
            (Some(CompiledString::Prefix(s)), false) => PathTest::Prefix(s),
            (Some(CompiledString::Exact(s)), true) => PathTest::ExactIgnoreCase(s),
            (Some(CompiledString::Prefix(s)), true) => PathTest::PrefixIgnoreCase(s),
            (Some(re @ CompiledString::Regex(_)), _) => PathTest::Regex(re),
        };
        let rest = RestMatcher {
            scheme: opt(&m.scheme)?,
            method: opt(&m.method)?,
            authority: opt(&m.authority)?,
            headers: compile_headers(&m.headers)?,
            without_headers: compile_headers(&m.without_headers)?,
            query_params: query_params.into(),
        };
        Ok(BlockMatcher {
            path,
            rest: (!rest.is_empty()).then(|| Box::new(rest)),
        })
    }

    #[inline(always)]
    fn matches<B>(&self, view: &View<'_, B>) -> bool {
        self.path.matches(view.path) && self.rest.as_deref().is_none_or(|r| r.matches(view))
    }
}

impl PathTest {
    #[inline(always)]
    fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathTest::Any => true,
            PathTest::Exact(s) => path == s.as_bytes(),
            PathTest::Prefix(s) => path.starts_with(s.as_bytes()),
            PathTest::ExactIgnoreCase(s) => path.eq_ignore_ascii_case(s.as_bytes()),
            PathTest::PrefixIgnoreCase(s) => path
                .get(..s.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s.as_bytes())),
            PathTest::Regex(re) => re.matches(path),
        }
    }
}

impl RestMatcher {
    fn is_empty(&self) -> bool {
        self.scheme.is_none()
            && self.method.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.without_headers.is_empty()
            && self.query_params.is_empty()
    }

    // Out of line, so that a path-only block's test stays small enough to
    // inline into the router's loop.
    #[inline(never)]
    fn matches<B>(&self, view: &View<'_, B>) -> bool {
        let req = view.req;
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
