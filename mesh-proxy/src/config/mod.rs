//! Loading config files: multi-document YAML of Istio kinds into one validated
//! [`Config`], with every error and warning as `FILE:LINE:COLUMN: message`.
//!
//! Each document is read twice: first its `apiVersion`, `kind` and name, which
//! pick the schema, then the whole document against that schema, which rejects
//! unknown fields and wrong types with their position. Fields Istio defines
//! but the proxy does not implement are accepted with a warning naming them.
//! Values are then checked one by one (durations, percentages, weights,
//! `retryOn`…), each error pointing at the offending value.
//!
//! # Config is untrusted input
//!
//! A config file may come from anyone who can write to the config directory,
//! so the loader bounds the work and memory any file can cost, and refuses
//! what is over a limit with an error naming the limit, never a hang, a
//! panic or a stack overflow. Whole-file limits are reported at `FILE:1:1`
//! (or at the line where they are reached); the others at the offending
//! node.
//!
//! | Limit | Value | Why |
//! |---|---|---|
//! | file size | 16 MiB ([`MAX_FILE_BYTES`]) | read with a bounded read, so `/dev/zero` or a FIFO cannot exhaust memory |
//! | encoding | UTF-8 (a leading BOM is skipped; CRLF, LF and CR line ends) | the first invalid byte is reported at its line and column |
//! | documents per file | 20,000 ([`MAX_DOCUMENTS`]) | bounds the per-document cost (each is parsed twice) |
//! | errors listed per file | 100; reading stops there | garbage cannot produce unbounded output |
//! | warnings listed per file | 100; the rest are counted | same |
//! | message length | 512 characters | a message quoting a huge key stays short |
//! | nesting depth | 64 block or flow levels ([`MAX_DEPTH`]) | the parser and deserializer recurse: a deep input must not overflow the stack |
//! | nodes per document | 250,000 ([`MAX_NODES`]) | "millions of tiny items"; ≈ 10,000 simple routes fit in one document |
//! | parser events per document | 1,000,000 | same, counting ends of collections |
//! | scalar bytes per document | 4 MiB ([`MAX_SCALAR_BYTES`]) | bounds a huge string value |
//! | mapping key length | 1,024 characters | YAML's own simple-key limit |
//! | aliases | 10,000 anchors/aliases; 100,000 replayed nodes; 32 nested | billion-laughs alias bombs |
//! | merge keys (`<<`) | 1,000 | same |
//! | duplicate keys | an error | YAML forbids them; silently picking one hides mistakes |
//! | durations | at most 315,576,000,000 s (protobuf's `Duration` maximum) | larger values overflow deadline arithmetic |
//! | regexes | RE2 syntax, compiled size at most 1 MiB (as `mesh-route`) | the `regex` crate is linear-time; the cap bounds compile time and memory |
//!
//! Timing, debug build (dependencies unoptimised) on the 2-core machine: an
//! alias bomb or 100,000 nesting levels is refused in 10–200 ms, a
//! 2-million-item list in about a second, a 16 MiB+ file or `/dev/zero` at
//! once; a document of 10,000 routes loads in about 1.6 s.

mod convert;
mod diag;
mod istio;
pub mod model;
mod source;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use self::diag::Diagnostics;
pub use self::diag::{Diagnostic, Position, Severity};
use self::istio::common::{Header, Object};
pub use self::model::Config;

/// The largest config file read (hostile input is bounded).
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// The most YAML documents read from one file.
pub const MAX_DOCUMENTS: usize = 20_000;
/// The deepest nesting of sequences and mappings.
pub const MAX_DEPTH: usize = 64;
/// The most YAML nodes (scalars, sequences, mappings) in one document.
pub const MAX_NODES: usize = 250_000;
/// The most bytes of scalar text in one document.
pub const MAX_SCALAR_BYTES: usize = 4 * 1024 * 1024;
const MAX_EVENTS: usize = 1_000_000;
const MAX_ALIASES: usize = 10_000;
const MAX_REPLAYED_EVENTS: usize = 100_000;
const MAX_REPLAY_DEPTH: usize = 32;
const MAX_MERGE_KEYS: usize = 1_000;

/// serde-saphyr's options for untrusted input: the budget above, duplicate
/// keys refused.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_events = MAX_EVENTS;
    budget.max_total_scalar_bytes = MAX_SCALAR_BYTES;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    budget.max_recorded_anchor_events = MAX_REPLAYED_EVENTS;
    budget.max_recorded_anchor_bytes = MAX_SCALAR_BYTES;
    budget.max_merge_keys = MAX_MERGE_KEYS;
    budget.max_documents = 1;
    budget.max_inclusion_depth = 0;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options.alias_limits.max_replay_stack_depth = MAX_REPLAY_DEPTH;
    options.with_snippet = false;
    options
}

/// What loading produced: the config when there was no error, and every
/// diagnostic.
#[derive(Debug)]
pub struct Loaded {
    /// The config, when no error was found.
    pub config: Option<Config>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

/// Loads `files` as one config.
pub fn load(files: &[PathBuf]) -> Loaded {
    let mut config = Config::default();
    let mut diagnostics = Vec::new();
    let mut ok = true;
    for file in files {
        let mut diags = Diagnostics::new(file);
        match read(file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => load_text(&text, &mut diags, &mut config),
                Err(e) => {
                    let bytes = e.as_bytes();
                    let at = e.utf8_error().valid_up_to();
                    let (line, col) = position_of(bytes, at);
                    let byte = bytes.get(at).copied().unwrap_or_default();
                    diags.error(
                        line,
                        col,
                        format!("not valid UTF-8 (byte 0x{byte:02x}); config files must be UTF-8"),
                    );
                }
            },
            Err(e) => diags.error(1, 1, format!("cannot read the file: {e}")),
        }
        ok &= !diags.has_errors();
        diagnostics.extend(diags.finish());
    }
    Loaded {
        config: ok.then_some(config),
        diagnostics,
    }
}

/// Loads YAML text as if it were the file `name` (for tests and reloads).
pub fn load_str(name: &Path, text: &str) -> Loaded {
    let mut config = Config::default();
    let mut diags = Diagnostics::new(name);
    load_text(text, &mut diags, &mut config);
    let ok = !diags.has_errors();
    Loaded {
        config: ok.then_some(config),
        diagnostics: diags.finish(),
    }
}

/// Reads at most [`MAX_FILE_BYTES`] of `file`: the length is not trusted
/// (`/dev/zero`, a FIFO or a growing file report none or a stale one).
fn read(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(file)?;
    let mut bytes = Vec::new();
    // One byte more than the limit tells "too large" from "exactly at it".
    f.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Line and column (from 1, columns in characters) of byte `at` of `bytes`.
fn position_of(bytes: &[u8], at: usize) -> (u64, u64) {
    let before = bytes.get(..at).unwrap_or(bytes);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map_or(0, |i| i + 1);
    let line = before
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && before.get(i + 1) != Some(&b'\n')))
        .count();
    let col = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
        .chars()
        .count();
    (line as u64 + 1, col as u64 + 1)
}

/// Reports a serde-saphyr error at its position, naming the object and, when
/// the message does not, the field on that line.
fn parse_error(
    diags: &mut Diagnostics,
    doc: &source::Document,
    what: &str,
    err: &serde_saphyr::Error,
) {
    let (line, col) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    let msg = limit_message(err).unwrap_or_else(|| {
        let plain = err.without_snippet().to_string();
        // Drop serde-saphyr's own " at line X, column Y": the position leads.
        match plain.find(" at line ") {
            Some(i) => plain[..i].to_string(),
            None => plain,
        }
    });
    let msg = if msg.contains('`') {
        msg
    } else {
        match source::key_at(&doc.text, line) {
            Some(key) => format!("{key}: {msg}"),
            None => msg,
        }
    };
    diags.error(line + doc.line_offset, col, format!("{what}{msg}"));
}

/// Our wording for the errors of a limit (naming it) and of duplicate keys;
/// `None` for the others, which serde-saphyr words well.
fn limit_message(err: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = err;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = e {
        e = error;
    }
    Some(match e {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => {
                format!("nested deeper than {MAX_DEPTH} levels (limit of the config loader)")
            }
            B::Nodes { .. } => format!(
                "more than {MAX_NODES} YAML nodes in one document (limit of the config loader; split it into several documents)"
            ),
            B::Events { .. } => format!(
                "more than {MAX_EVENTS} YAML events in one document (limit of the config loader; split it into several documents)"
            ),
            B::ScalarBytes { .. } => format!(
                "more than {MAX_SCALAR_BYTES} bytes of strings in one document (limit of the config loader)"
            ),
            B::Aliases { .. } | B::Anchors { .. } => format!(
                "more than {MAX_ALIASES} YAML anchors or aliases (limit of the config loader)"
            ),
            B::AliasAnchorRatio { aliases, anchors } => format!(
                "{aliases} aliases for {anchors} anchors: too many aliases per anchor (alias-bomb limit of the config loader)"
            ),
            B::RecordedAnchorEvents { .. } | B::RecordedAnchorBytes { .. } => format!(
                "YAML anchors hold more than {MAX_REPLAYED_EVENTS} nodes (alias-bomb limit of the config loader)"
            ),
            B::MergeKeys { .. } => {
                format!("more than {MAX_MERGE_KEYS} merge keys (`<<`) (limit of the config loader)")
            }
            B::Documents { .. } => "more than one YAML document".to_string(),
            other => format!("YAML limit of the config loader exceeded: {other:?}"),
        },
        E::AliasReplayLimitExceeded { .. } | E::AliasExpansionLimitExceeded { .. } => format!(
            "aliases expand to more than {MAX_REPLAYED_EVENTS} nodes (alias-bomb limit of the config loader)"
        ),
        E::AliasReplayStackDepthExceeded { .. } => {
            format!("aliases nested more than {MAX_REPLAY_DEPTH} deep (limit of the config loader)")
        }
        E::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("duplicate key `{}`", clip(k, 100)),
            None => "duplicate key".to_string(),
        },
        _ => {
            let plain = e.to_string();
            if plain.starts_with("recursion limit exceeded") {
                format!("nested deeper than {MAX_DEPTH} levels (limit of the config loader)")
            } else if plain.starts_with("simple key expected ':'") {
                "simple key expected ':' (a mapping key must fit on one line and in 1024 characters)"
                    .to_string()
            } else {
                return None;
            }
        }
    })
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn parse<K: DeserializeOwned>(
    diags: &mut Diagnostics,
    doc: &source::Document,
    what: &str,
) -> Option<Object<K>> {
    match serde_saphyr::from_str_with_options::<Object<K>>(&doc.text, yaml_options()) {
        Ok(obj) => Some(obj),
        Err(e) => {
            parse_error(diags, doc, what, &e);
            None
        }
    }
}

const NETWORKING: &[&str] = &[
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];
const SECURITY: &[&str] = &["security.istio.io/v1", "security.istio.io/v1beta1"];

fn load_text(text: &str, diags: &mut Diagnostics, config: &mut Config) {
    if text.len() > MAX_FILE_BYTES {
        diags.error(
            1,
            1,
            format!(
                "the config is larger than {MAX_FILE_BYTES} bytes (limit of the config loader)"
            ),
        );
        return;
    }
    // A byte-order mark is invisible in editors: columns count after it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, doc) in source::documents(text).enumerate() {
        if diags.too_many_errors() {
            diags.stopped(doc.line_offset + 1);
            return;
        }
        if n == MAX_DOCUMENTS {
            diags.error(
                doc.line_offset + 1,
                1,
                format!(
                    "more than {MAX_DOCUMENTS} YAML documents in one file (limit of the config loader); the rest of the file was not read"
                ),
            );
            return;
        }
        let header: Header = match serde_saphyr::from_str_with_options(&doc.text, yaml_options()) {
            Ok(h) => h,
            Err(e) => {
                parse_error(diags, &doc, "", &e);
                continue;
            }
        };
        let Some(kind) = header.kind else {
            diags.error(doc.line_offset + 1, 1, "document has no `kind`".into());
            continue;
        };
        let name = header.metadata.and_then(|m| m.name).unwrap_or_default();
        let kind_pos = (
            kind.referenced.line() + doc.line_offset,
            kind.referenced.column(),
        );
        let api = header.api_version.map(|a| a.value).unwrap_or_default();
        let groups = match kind.value.as_str() {
            "ServiceEntry" | "VirtualService" | "DestinationRule" | "Sidecar" => NETWORKING,
            "PeerAuthentication" | "AuthorizationPolicy" => SECURITY,
            other => {
                diags.warning(
                    kind_pos.0,
                    kind_pos.1,
                    format!("{other} {name}: kind {other} is not served by mesh-proxy; ignored"),
                );
                continue;
            }
        };
        if !groups.contains(&api.as_str()) {
            diags.error(
                kind_pos.0,
                kind_pos.1,
                format!(
                    "{} {name}: apiVersion {api:?} is not supported for this kind (use one of {})",
                    kind.value,
                    groups.join(", ")
                ),
            );
            continue;
        }
        let what = format!("{} {name}: ", kind.value);
        let mut ctx = convert::Ctx {
            diags,
            kind: match kind.value.as_str() {
                "ServiceEntry" => "ServiceEntry",
                "VirtualService" => "VirtualService",
                "DestinationRule" => "DestinationRule",
                "Sidecar" => "Sidecar",
                "PeerAuthentication" => "PeerAuthentication",
                _ => "AuthorizationPolicy",
            },
            name: name.clone(),
            line_offset: doc.line_offset,
            errors: 0,
        };
        match ctx.kind {
            "ServiceEntry" => {
                if let Some(o) = parse(ctx.diags, &doc, &what) {
                    config
                        .services
                        .extend(convert::service_entry(&mut ctx, &o.metadata, &o.spec));
                }
            }
            "VirtualService" => {
                if let Some(o) = parse(ctx.diags, &doc, &what) {
                    config.virtual_services.extend(convert::virtual_service(
                        &mut ctx,
                        &o.metadata,
                        &o.spec,
                    ));
                }
            }
            "DestinationRule" => {
                if let Some(o) = parse(ctx.diags, &doc, &what) {
                    config.destination_rules.extend(convert::destination_rule(
                        &mut ctx,
                        &o.metadata,
                        &o.spec,
                    ));
                }
            }
            "Sidecar" => {
                if let Some(o) = parse(ctx.diags, &doc, &what) {
                    config
                        .listeners
                        .extend(convert::sidecar(&mut ctx, &o.metadata, &o.spec));
                }
            }
            "PeerAuthentication" => {
                if let Some(o) = parse(ctx.diags, &doc, &what)
                    && let Some(mode) = convert::peer_authentication(&mut ctx, &o.metadata, &o.spec)
                {
                    config.peer_authentication = Some(mode);
                }
            }
            _ => {
                if let Some(o) = parse(ctx.diags, &doc, &what) {
                    config.authorization.extend(convert::authorization_policy(
                        &mut ctx,
                        &o.metadata,
                        &o.spec,
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
