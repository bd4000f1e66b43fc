//! A compiled [`StringMatch`].

use regex::bytes::{Regex, RegexBuilder};

use crate::config::{ConfigError, ConfigErrorKind, StringMatch};

/// Compiled regexes are capped at this size (Envoy caps program size too).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A [`StringMatch`] ready to run.
#[derive(Clone, Debug)]
pub(crate) enum CompiledString {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex),
}

impl CompiledString {
    pub(crate) fn compile(m: &StringMatch) -> Result<Self, ConfigError> {
        Ok(match m {
            StringMatch::Exact(s) => CompiledString::Exact(s.as_str().into()),
            StringMatch::Prefix(s) => CompiledString::Prefix(s.as_str().into()),
            StringMatch::Regex(pattern) => CompiledString::Regex(full_match_regex(pattern)?),
        })
    }

    /// Whether `value` matches, case-sensitively.
    #[inline]
    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        match self {
            CompiledString::Exact(s) => value == s.as_bytes(),
            CompiledString::Prefix(s) => value.starts_with(s.as_bytes()),
            CompiledString::Regex(re) => re.is_match(value),
        }
    }
}

/// Compiles `pattern` so that it must match the whole input.
///
/// The pattern is first compiled on its own, which proves its groups are
/// balanced; only then is it wrapped in `^(?:…)$`. Without that check a
/// pattern such as `a)|(b` would wrap into `^(?:a)|(b)$` and match anything
/// starting with `a`.
fn full_match_regex(pattern: &str) -> Result<Regex, ConfigError> {
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    let err = |source| {
        ConfigError::from(ConfigErrorKind::Regex {
            pattern: pattern.to_owned(),
            source,
        })
    };
    build(pattern).map_err(err)?;
    build(&format!("^(?:{pattern})$")).map_err(err)
}
