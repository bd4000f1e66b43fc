//! gRPC through the sidecar: a real tonic client speaking HTTP/2 (prior
//! knowledge) to the proxy's outbound listener, a real tonic server behind it
//! on a `protocol: GRPC` port. No protoc: the messages are hand-written prost
//! structs, the server is tonic's generic `tonic::server::Grpc` served by
//! hyper, the client is tonic's generic `tonic::client::Grpc` over a
//! `Channel` whose origin is the service host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, Iter};
use http::uri::PathAndQuery;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{ProxyProc, sidecar};
use tokio::net::TcpListener;
use tonic::server::{ServerStreamingService, UnaryService};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// The service's host and port, as the client names them.
const HOST: &str = "echo.default.svc.cluster.local";
const PORT: u16 = 50051;
const SAY: &str = "/mesh.test.Echo/Say";
const COUNT: &str = "/mesh.test.Echo/Count";

/// The one message type: `message Msg { string text = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

/// What the server saw of one HTTP request.
#[derive(Clone, Debug)]
struct Seen {
    version: http::Version,
    authority: Option<String>,
    te: Option<String>,
    content_type: Option<String>,
}

/// A gRPC server with `Say` (unary) and `Count` (server streaming). `Say`
/// answers the first `fail_first` calls with UNAVAILABLE. Every response that
/// ends with trailers gets `x-served-by: echo-1` added to them.
#[derive(Clone, Default)]
struct Echo {
    addr: Option<SocketAddr>,
    calls: Arc<AtomicUsize>,
    fail_first: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Echo {
    async fn start(fail_first: usize) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo = Echo {
            addr: Some(listener.local_addr().unwrap()),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            ..Echo::default()
        };
        let e = echo.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let e = e.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(e.clone(), req));
                    // HTTP/1 as well, so a proxy that spoke HTTP/1 upstream
                    // would be caught by the version check, not by a hang.
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        echo
    }

    fn port(&self) -> u16 {
        self.addr.unwrap().port()
    }

    /// Calls to `Say`, failed or not.
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Status>;

async fn handle(
    echo: Echo,
    req: http::Request<Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    echo.seen.lock().unwrap().push(Seen {
        version: req.version(),
        authority: req
            .uri()
            .authority()
            .map(ToString::to_string)
            .or_else(|| header("host")),
        te: header("te"),
        content_type: header("content-type"),
    });
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
    let res = match req.uri().path() {
        SAY => grpc.unary(Say(echo), req).await,
        COUNT => grpc.server_streaming(Count, req).await,
        _ => Status::unimplemented("no such method").into_http(),
    };
    Ok(res.map(|body| {
        body.map_frame(|frame| match frame.into_trailers() {
            Ok(mut trailers) => {
                trailers.insert("x-served-by", http::HeaderValue::from_static("echo-1"));
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        })
        .boxed_unsync()
    }))
}

struct Say(Echo);

impl UnaryService<Msg> for Say {
    type Response = Msg;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Msg>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Msg>) -> Self::Future {
        let echo = self.0.clone();
        Box::pin(async move {
            echo.calls.fetch_add(1, Ordering::SeqCst);
            let failing = echo
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(Status::unavailable("warming up"));
            }
            let text = format!("hello {}", request.into_inner().text);
            Ok(tonic::Response::new(Msg { text }))
        })
    }
}

/// Streams `text` back as `n` messages `text-1` .. `text-n`, `n` = 3.
struct Count;

impl ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = Iter<std::vec::IntoIter<Result<Msg, Status>>>;
    type Future = std::future::Ready<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Msg>) -> Self::Future {
        let text = request.into_inner().text;
        let items: Vec<Result<Msg, Status>> = (1..=3)
            .map(|i| {
                Ok(Msg {
                    text: format!("{text}-{i}"),
                })
            })
            .collect();
        std::future::ready(Ok(tonic::Response::new(stream::iter(items))))
    }
}

/// The ServiceEntry for `echo` with one endpoint, its port `protocol: GRPC`.
fn service(echo: &Echo) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [{HOST}]\n  ports: [{{number: {PORT}, name: grpc, protocol: GRPC}}]\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{grpc: {}}}\n    labels: {{version: v1}}\n",
        echo.port()
    )
}

/// A VirtualService for `echo` with these `retries`.
fn retries(retries: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: echo}}\nspec:\n  hosts: [{HOST}]\n  http:\n  - route: [{{destination: {{host: {HOST}}}}}]\n    retries: {retries}\n"
    )
}

/// A tonic client connected to the proxy's outbound listener over h2c, whose
/// requests carry `:authority` = the service's host and port.
async fn client(proxy: &ProxyProc) -> tonic::client::Grpc<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", proxy.outbound()))
        .unwrap()
        .origin(format!("http://{HOST}:{PORT}").parse().unwrap())
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn say(
    grpc: &mut tonic::client::Grpc<Channel>,
    text: &str,
) -> Result<tonic::Response<Msg>, Status> {
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(Msg { text: text.into() }),
        PathAndQuery::from_static(SAY),
        ProstCodec::<Msg, Msg>::default(),
    )
    .await
}

/// What the server saw was gRPC over HTTP/2 with `te: trailers` and the
/// service's authority, as Envoy forwards it.
fn assert_grpc_over_h2(seen: &[Seen]) {
    assert!(!seen.is_empty());
    for s in seen {
        assert_eq!(s.version, http::Version::HTTP_2, "{s:?}");
        assert_eq!(s.te.as_deref(), Some("trailers"), "{s:?}");
        assert_eq!(s.content_type.as_deref(), Some("application/grpc"), "{s:?}");
        assert_eq!(
            s.authority.as_deref(),
            Some(format!("{HOST}:{PORT}").as_str()),
            "{s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_call_passes_through_with_its_trailers() {
    let echo = Echo::start(0).await;
    let proxy = ProxyProc::start(&format!("{}{}", sidecar(), service(&echo)));
    let mut grpc = client(&proxy).await;

    // tonic fails a call whose trailers lack `grpc-status`, so Ok means the
    // `grpc-status: 0` trailer arrived; the unary response's metadata is the
    // headers merged with the trailers, and the server sent `x-served-by`
    // only in the trailers.
    let res = say(&mut grpc, "mesh").await.unwrap();
    assert_eq!(res.get_ref().text, "hello mesh");
    assert_eq!(res.metadata().get("x-served-by").unwrap(), "echo-1");
    // A second call on the same connection.
    let res = say(&mut grpc, "again").await.unwrap();
    assert_eq!(res.get_ref().text, "hello again");
    assert_eq!(echo.calls(), 2);
    assert_grpc_over_h2(&echo.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_when_retry_on_names_it() {
    let echo = Echo::start(1).await;
    let proxy = ProxyProc::start(&format!(
        "{}{}{}",
        sidecar(),
        service(&echo),
        retries("{attempts: 2, retryOn: unavailable}")
    ));
    let mut grpc = client(&proxy).await;
    let res = say(&mut grpc, "retry").await.unwrap();
    assert_eq!(res.get_ref().text, "hello retry");
    assert_eq!(res.metadata().get("x-served-by").unwrap(), "echo-1");
    assert_eq!(echo.calls(), 2, "one UNAVAILABLE, one retry");
    assert_grpc_over_h2(&echo.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_not_retried_on_5xx_alone() {
    let echo = Echo::start(1).await;
    let proxy = ProxyProc::start(&format!(
        "{}{}{}",
        sidecar(),
        service(&echo),
        retries("{attempts: 2, retryOn: 5xx}")
    ));
    let mut grpc = client(&proxy).await;
    // UNAVAILABLE comes as HTTP 200 with `grpc-status: 14` in the headers
    // (trailers-only): not a 5xx.
    let status = say(&mut grpc, "no-retry").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "warming up");
    assert_eq!(echo.calls(), 1, "no retry");
    // The next call is the server's second: it succeeds.
    assert_eq!(
        say(&mut grpc, "later").await.unwrap().get_ref().text,
        "hello later"
    );
    assert_eq!(echo.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stream_passes_through_with_its_trailers() {
    let echo = Echo::start(0).await;
    let proxy = ProxyProc::start(&format!("{}{}", sidecar(), service(&echo)));
    let mut grpc = client(&proxy).await;
    grpc.ready().await.unwrap();
    let res = grpc
        .server_streaming(
            tonic::Request::new(Msg { text: "n".into() }),
            PathAndQuery::from_static(COUNT),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap();
    let mut stream = res.into_inner();
    let mut texts = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        texts.push(msg.text);
    }
    assert_eq!(texts, ["n-1", "n-2", "n-3"]);
    let trailers = stream.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("x-served-by").unwrap(), "echo-1");
    assert_grpc_over_h2(&echo.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_are_counted_as_grpc() {
    let echo = Echo::start(0).await;
    let proxy = ProxyProc::start(&format!("{}{}", sidecar(), service(&echo)));
    let mut grpc = client(&proxy).await;
    for i in 0..3 {
        say(&mut grpc, &i.to_string()).await.unwrap();
    }
    // Counted when the response body ends, just after the client has it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let metrics = proxy.admin_get("/stats/prometheus").await.1;
        let line = metrics
            .lines()
            .find(|l| l.starts_with("istio_requests_total{") && l.contains(HOST))
            .map(str::to_owned);
        if let Some(line) = line.filter(|l| l.ends_with(" 3")) {
            break line;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(line.contains("request_protocol=\"grpc\""), "{line}");
    assert!(line.contains("response_code=\"200\""), "{line}");
    assert!(line.contains("destination_service_name=\"echo\""), "{line}");
    assert!(line.contains("reporter=\"source\""), "{line}");
}
