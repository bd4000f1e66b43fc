//! Istio's standard metrics, in Prometheus text format, so Istio's Grafana
//! dashboards work unchanged.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use mesh_core::ResponseFlags;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Istio's duration buckets, in milliseconds.
const DURATION_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's size buckets, in bytes.
const SIZE_BUCKETS: [f64; 8] = [
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

/// The labels of Istio's request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) reporter: Cow<'static, str>,
    pub(crate) destination_service: Cow<'static, str>,
    pub(crate) destination_service_name: Cow<'static, str>,
    pub(crate) destination_version: Cow<'static, str>,
    pub(crate) response_code: u16,
    pub(crate) response_flags: Cow<'static, str>,
    pub(crate) request_protocol: Cow<'static, str>,
    pub(crate) connection_security_policy: Cow<'static, str>,
}

/// The labels of Istio's TCP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TcpLabels {
    pub(crate) reporter: Cow<'static, str>,
    pub(crate) destination_service: Cow<'static, str>,
    pub(crate) destination_service_name: Cow<'static, str>,
    pub(crate) connection_security_policy: Cow<'static, str>,
}

/// The counters of one proxied TCP connection's label set.
#[derive(Clone, Debug)]
pub(crate) struct TcpCounters {
    /// Bytes sent to the downstream client (the response direction).
    pub(crate) sent: Counter,
    /// Bytes received from the downstream client (the request direction).
    pub(crate) received: Counter,
    pub(crate) opened: Counter,
    pub(crate) closed: Counter,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// What a finished request is counted under: the label values, the strings
/// borrowed from the config's `Arc`s (made once per config), so a request
/// clones none of them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LabelKey<'a> {
    pub(crate) reporter: &'static str,
    /// `destination_service` and `destination_service_name`; `unknown` when `None`.
    pub(crate) destination: Option<(&'a Arc<str>, &'a Arc<str>)>,
    /// `destination_version`; `unknown` when `None`.
    pub(crate) version: Option<&'a Arc<str>>,
    pub(crate) response_code: u16,
    pub(crate) response_flags: ResponseFlags,
    pub(crate) grpc: bool,
    pub(crate) mtls: bool,
}

fn arc_addr(s: &Arc<str>) -> usize {
    Arc::as_ptr(s).cast::<u8>() as usize
}

/// A [`LabelKey`] as the cache keys it, in machine words: the strings by
/// address, the rest by value. The cache entry holds the strings' `Arc`s,
/// so an address is not reused while its entry lives. Two keys whose strings
/// are equal but in distinct `Arc`s get two entries holding the same metrics
/// (the families key by label values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CacheKey {
    reporter: usize,
    host: usize,
    name: usize,
    version: usize,
    /// The response code, and `grpc` and `mtls` above it.
    code: u64,
    flags: ResponseFlags,
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.reporter);
        state.write_usize(self.host);
        state.write_usize(self.name);
        state.write_usize(self.version);
        state.write_u64(self.code);
        self.flags.hash(state);
    }
}

impl LabelKey<'_> {
    /// The cache's key for it.
    fn cache_key(&self) -> CacheKey {
        let (host, name) = self
            .destination
            .map_or((0, 0), |(host, name)| (arc_addr(host), arc_addr(name)));
        CacheKey {
            reporter: self.reporter.as_ptr() as usize,
            host,
            name,
            version: self.version.map_or(0, arc_addr),
            code: u64::from(self.response_code)
                | u64::from(self.grpc) << 16
                | u64::from(self.mtls) << 17,
            flags: self.response_flags,
        }
    }

    /// The strings' `Arc`s, for the cache entry to hold.
    fn strings(&self) -> Strings {
        (
            self.destination.map(|(h, n)| (h.clone(), n.clone())),
            self.version.cloned(),
        )
    }

    /// The label values this key stands for.
    fn labels(&self) -> RequestLabels {
        let unknown = Cow::Borrowed("unknown");
        RequestLabels {
            reporter: Cow::Borrowed(self.reporter),
            destination_service: self
                .destination
                .as_ref()
                .map_or(unknown.clone(), |(host, _)| Cow::Owned(host.to_string())),
            destination_service_name: self
                .destination
                .as_ref()
                .map_or(unknown.clone(), |(_, name)| Cow::Owned(name.to_string())),
            destination_version: self
                .version
                .as_ref()
                .map_or(unknown, |v| Cow::Owned(v.to_string())),
            response_code: self.response_code,
            response_flags: Cow::Owned(self.response_flags.to_string()),
            request_protocol: Cow::Borrowed(if self.grpc { "grpc" } else { "http" }),
            connection_security_policy: Cow::Borrowed(if self.mtls {
                "mutual_tls"
            } else {
                "none"
            }),
        }
    }
}

/// A multiply-rotate hasher for [`LabelKey`]'s few machine words (the
/// default SipHash is built for untrusted keys; these are addresses and
/// small integers the proxy made itself).
#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The strings a cache entry's key points at, kept alive with it.
type Strings = (Option<(Arc<str>, Arc<str>)>, Option<Arc<str>>);

/// The metrics of one label set, taken from the families once.
#[derive(Debug)]
struct Handles {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
    /// What the entry's key points at.
    _strings: Strings,
}

impl Handles {
    fn record(&self, duration_ms: f64, request_bytes: u64, response_bytes: u64) {
        self.requests.inc();
        self.duration.observe(duration_ms);
        self.request_bytes.observe(request_bytes as f64);
        self.response_bytes.observe(response_bytes as f64);
    }
}

/// Entries kept before the cache is emptied (config reloads make new `Arc`s,
/// so old keys would otherwise pile up).
const CACHE_LIMIT: usize = 4096;

type HandleCache = HashMap<CacheKey, Handles, BuildHasherDefault<WordHasher>>;

/// The request metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    request_bytes: HistogramFamily,
    response_bytes: HistogramFamily,
    tcp_sent: Family<TcpLabels, Counter>,
    tcp_received: Family<TcpLabels, Counter>,
    tcp_opened: Family<TcpLabels, Counter>,
    tcp_closed: Family<TcpLabels, Counter>,
    /// Handles by [`LabelKey`], so a request neither builds its label strings
    /// nor looks up four families.
    cache: Mutex<HandleCache>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let request_bytes: HistogramFamily = Family::new_with_constructor(size_histogram);
        let response_bytes: HistogramFamily = Family::new_with_constructor(size_histogram);
        registry.register(
            "istio_requests",
            "Requests processed by the proxy",
            requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds",
            duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body sizes in bytes",
            request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body sizes in bytes",
            response_bytes.clone(),
        );
        let tcp_sent = Family::<TcpLabels, Counter>::default();
        let tcp_received = Family::<TcpLabels, Counter>::default();
        let tcp_opened = Family::<TcpLabels, Counter>::default();
        let tcp_closed = Family::<TcpLabels, Counter>::default();
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the downstream client on TCP connections",
            tcp_sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the downstream client on TCP connections",
            tcp_received.clone(),
        );
        registry.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            tcp_opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            tcp_closed.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            request_bytes,
            response_bytes,
            tcp_sent,
            tcp_received,
            tcp_opened,
            tcp_closed,
            cache: Mutex::default(),
        }
    }

    /// The TCP counters of a label set (one lookup per connection; the
    /// copy loop then adds to them as bytes pass).
    pub(crate) fn tcp(&self, labels: &TcpLabels) -> TcpCounters {
        TcpCounters {
            sent: self.tcp_sent.get_or_create(labels).clone(),
            received: self.tcp_received.get_or_create(labels).clone(),
            opened: self.tcp_opened.get_or_create(labels).clone(),
            closed: self.tcp_closed.get_or_create(labels).clone(),
        }
    }

    /// Records one finished request under the labels `key` stands for.
    pub(crate) fn record_key(
        &self,
        key: &LabelKey<'_>,
        duration_ms: f64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let cache_key = key.cache_key();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = cache.get(&cache_key) {
            handles.record(duration_ms, request_bytes, response_bytes);
            return;
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        let labels = key.labels();
        let handles = Handles {
            requests: self.requests.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
            request_bytes: self.request_bytes.get_or_create(&labels).clone(),
            response_bytes: self.response_bytes.get_or_create(&labels).clone(),
            _strings: key.strings(),
        };
        handles.record(duration_ms, request_bytes, response_bytes);
        cache.insert(cache_key, handles);
    }

    /// Records one finished request by its label values (the families'
    /// own lookup; the proxy uses [`Metrics::record_key`]).
    #[cfg(test)]
    pub(crate) fn record(
        &self,
        labels: &RequestLabels,
        duration_ms: f64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        self.requests.get_or_create(labels).inc();
        self.duration.get_or_create(labels).observe(duration_ms);
        self.request_bytes
            .get_or_create(labels)
            .observe(request_bytes as f64);
        self.response_bytes
            .get_or_create(labels)
            .observe(response_bytes as f64);
    }

    /// The metrics in Prometheus text format, with `extra` families (already
    /// formatted) before the end marker.
    pub(crate) fn encode(&self, extra: &str) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        out.push_str(extra);
        out.push_str("# EOF\n");
        out
    }
}

/// Writes one family of samples in text format.
pub(crate) fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let suffix = if kind == "counter" { "_total" } else { "" };
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{suffix}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_names_and_labels() {
        let m = Metrics::new();
        let labels = RequestLabels {
            reporter: "source".into(),
            destination_service: "reviews.default.svc.cluster.local".into(),
            destination_service_name: "reviews".into(),
            destination_version: "v2".into(),
            response_code: 503,
            response_flags: "UH".into(),
            request_protocol: "http".into(),
            connection_security_policy: "none".into(),
        };
        m.record(&labels, 3.0, 10, 20);
        m.record(&labels, 3.0, 10, 20);
        let text = m.encode("");
        assert!(text.contains("istio_requests_total{reporter=\"source\",destination_service=\"reviews.default.svc.cluster.local\",destination_service_name=\"reviews\",destination_version=\"v2\",response_code=\"503\",response_flags=\"UH\",request_protocol=\"http\",connection_security_policy=\"none\"} 2"), "{text}");
        assert!(text.contains("istio_request_duration_milliseconds_bucket{"));
        assert!(text.contains("le=\"0.5\""));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn cached_handles_count_as_the_families_do() {
        let host: Arc<str> = "reviews.default.svc.cluster.local".into();
        let name: Arc<str> = "reviews".into();
        let version: Arc<str> = "v2".into();
        let mut flags = ResponseFlags::EMPTY;
        flags.insert(mesh_core::ResponseFlag::NoHealthyUpstream);
        let key = LabelKey {
            reporter: "source",
            destination: Some((&host, &name)),
            version: Some(&version),
            response_code: 503,
            response_flags: flags,
            grpc: false,
            mtls: false,
        };
        let by_key = Metrics::new();
        by_key.record_key(&key, 3.0, 10, 20);
        // The entry holds the strings its key points at; a hit clones none.
        assert_eq!(Arc::strong_count(&host), 2);
        by_key.record_key(&key, 0.0, 0, 0);
        assert_eq!(Arc::strong_count(&version), 2);
        // Equal strings in other `Arc`s: a second cache entry, the same series.
        let (host2, name2, version2): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from(&*host), Arc::from(&*name), Arc::from(&*version));
        let copy = LabelKey {
            destination: Some((&host2, &name2)),
            version: Some(&version2),
            ..key
        };
        by_key.record_key(&copy, 3.0, 10, 20);
        let unknown = LabelKey {
            destination: None,
            version: None,
            response_flags: ResponseFlags::EMPTY,
            response_code: 200,
            grpc: true,
            mtls: true,
            ..key
        };
        by_key.record_key(&unknown, 700.0, 0, 5);

        let by_labels = Metrics::new();
        by_labels.record(&key.labels(), 3.0, 10, 20);
        by_labels.record(&key.labels(), 0.0, 0, 0);
        by_labels.record(&key.labels(), 3.0, 10, 20);
        let labels = unknown.labels();
        assert_eq!(labels.destination_service, "unknown");
        assert_eq!(labels.destination_version, "unknown");
        assert_eq!(labels.response_flags, "-");
        assert_eq!(labels.request_protocol, "grpc");
        assert_eq!(labels.connection_security_policy, "mutual_tls");
        by_labels.record(&labels, 700.0, 0, 5);
        // A family encodes its series in hash-map order: compare as sets.
        let sorted = |m: &Metrics| {
            let text = m.encode("");
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&by_key), sorted(&by_labels));
        assert!(by_key.encode("").contains("response_flags=\"UH\""));
    }
}
