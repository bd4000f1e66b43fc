//! Loading config files: multi-document YAML of Istio kinds into one validated
//! [`Config`], with every error and warning as `FILE:LINE:COLUMN: message`.
//!
//! Each document is read twice: first its `apiVersion`, `kind` and name, which
//! pick the schema, then the whole document against that schema, which rejects
//! unknown fields and wrong types with their position. Fields Istio defines
//! but the proxy does not implement are accepted with a warning naming them.
//! Values are then checked one by one (durations, percentages, weights,
//! `retryOn`…), each error pointing at the offending value.

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
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

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
            Ok(text) => load_text(&text, &mut diags, &mut config),
            Err(e) => diags.error(1, 1, format!("cannot read the file: {e}")),
        }
        ok &= diags.list.iter().all(|d| d.severity != Severity::Error);
        diagnostics.extend(diags.list);
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
    let ok = diags.list.iter().all(|d| d.severity != Severity::Error);
    Loaded {
        config: ok.then_some(config),
        diagnostics: diags.list,
    }
}

fn read(file: &Path) -> std::io::Result<String> {
    let len = std::fs::metadata(file)?.len();
    if len > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    std::fs::read_to_string(file)
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
    let plain = err.without_snippet().to_string();
    // Drop serde-saphyr's own " at line X, column Y": the position leads.
    let msg = match plain.rfind(" at line ") {
        Some(i) => plain[..i].to_string(),
        None => plain,
    };
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

fn parse<K: DeserializeOwned>(
    diags: &mut Diagnostics,
    doc: &source::Document,
    what: &str,
) -> Option<Object<K>> {
    match serde_saphyr::from_str::<Object<K>>(&doc.text) {
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
    for doc in source::documents(text) {
        let header: Header = match serde_saphyr::from_str(&doc.text) {
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
