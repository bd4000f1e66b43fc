//! Istio's standard metrics, in Prometheus text format, so Istio's Grafana
//! dashboards work unchanged.

use std::borrow::Cow;
use std::fmt::Write as _;

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

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The request metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    request_bytes: HistogramFamily,
    response_bytes: HistogramFamily,
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
        Metrics {
            registry,
            requests,
            duration,
            request_bytes,
            response_bytes,
        }
    }

    /// Records one finished request.
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
}
