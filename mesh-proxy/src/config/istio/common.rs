//! Types shared by the Istio kinds: metadata, string matches, durations,
//! percentages, and the marker for fields Istio has that we ignore.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

/// A value with the place it was written.
pub(crate) type S<T> = Spanned<T>;

/// A field Istio defines that the proxy does not implement: accepted with a
/// warning naming it.
pub(crate) type Unsupported = Option<Spanned<IgnoredAny>>;

/// A Kubernetes object of kind `K`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Object<K> {
    #[allow(dead_code)] // read by the header pass
    pub(crate) api_version: S<String>,
    #[allow(dead_code)]
    pub(crate) kind: S<String>,
    pub(crate) metadata: Metadata,
    pub(crate) spec: K,
    #[allow(dead_code)] // written by controllers; ignored
    #[serde(default)]
    pub(crate) status: Option<IgnoredAny>,
}

/// `apiVersion`, `kind` and `metadata.name`, read first to pick the schema.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Header {
    pub(crate) api_version: Option<S<String>>,
    pub(crate) kind: Option<S<String>>,
    #[serde(default)]
    pub(crate) metadata: Option<HeaderMeta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeaderMeta {
    pub(crate) name: Option<String>,
}

/// `metadata`: the name matters; the rest of what Kubernetes writes there is
/// accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Metadata {
    pub(crate) name: S<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// Istio's `StringMatch`: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct StringMatch {
    pub(crate) exact: Option<S<String>>,
    pub(crate) prefix: Option<S<String>>,
    pub(crate) regex: Option<S<String>>,
}

/// `percentage: {value: N}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Percent {
    pub(crate) value: S<f64>,
}

/// A port selector `{number: N}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PortSelector {
    pub(crate) number: S<u32>,
}
