//! Test support: real hyper backends on 127.0.0.1, the real proxy binary, and
//! a client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// How a backend answers.
#[derive(Clone, Copy, Debug)]
pub enum Behavior {
    /// 200 with its name.
    Ok,
    /// This status with its name.
    Status(u16),
    /// 200 after a delay.
    Delay(Duration),
}

/// A backend server that answers with its name and records what it saw.
#[derive(Clone, Debug)]
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub hosts: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    pub async fn start(name: &'static str, behavior: Behavior) -> Backend {
        Self::start_at("127.0.0.1:0".parse().unwrap(), name, behavior).await
    }

    /// A backend on a given address (another loopback IP, a chosen port).
    pub async fn start_at(bind: SocketAddr, name: &'static str, behavior: Behavior) -> Backend {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Backend {
            name,
            addr,
            hits: Arc::default(),
            hosts: Arc::default(),
        };
        let b = backend.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let b = b.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let b = b.clone();
                        async move {
                            b.hits.fetch_add(1, Ordering::SeqCst);
                            let host = req
                                .headers()
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            b.hosts.lock().unwrap().push(host);
                            let status = match behavior {
                                Behavior::Ok => 200,
                                Behavior::Status(s) => s,
                                Behavior::Delay(d) => {
                                    tokio::time::sleep(d).await;
                                    200
                                }
                            };
                            let mut res = Response::new(Full::new(Bytes::from(b.name)));
                            *res.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        backend
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The proxy binary, running.
pub struct ProxyProc {
    child: Child,
    pub admin: SocketAddr,
    pub listeners: HashMap<String, SocketAddr>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    pub config_path: std::path::PathBuf,
}

impl ProxyProc {
    /// Starts `mesh-proxy run` on `yaml` and waits until it is ready.
    pub fn start(yaml: &str) -> ProxyProc {
        Self::start_with(yaml, &[])
    }

    /// As [`start`](Self::start), with `extra` arguments; two worker
    /// threads unless `extra` sets `--threads`.
    pub fn start_with(yaml: &str, extra: &[&str]) -> ProxyProc {
        if extra.contains(&"--threads") {
            return Self::start_exactly(yaml, extra);
        }
        let mut args = vec!["--threads", "2"];
        args.extend_from_slice(extra);
        Self::start_exactly(yaml, &args)
    }

    /// Starts `mesh-proxy run` on `yaml` with an ephemeral admin port and
    /// `args` alone (no default of the tests'), and waits until it is ready.
    pub fn start_exactly(yaml: &str, args: &[&str]) -> ProxyProc {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
            .args(["run", "-c"])
            .arg(&path)
            .args(["--admin", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let out_lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let o = out_lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                o.lock().unwrap().push(line);
            }
        });
        let err_lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let e = err_lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                e.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut admin = None;
        let mut listeners = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("proxy did not start: {:?}", err_lines.lock().unwrap()));
            if let Some(rest) = line.strip_prefix("mesh-proxy: admin listening on ") {
                admin = Some(rest.trim().parse().unwrap());
            } else if let Some(rest) = line.strip_prefix("mesh-proxy: listener ") {
                let (name, addr) = rest.split_once(" listening on ").unwrap();
                listeners.insert(name.to_owned(), addr.trim().parse().unwrap());
            } else if line == "mesh-proxy: ready" {
                break;
            }
        }
        ProxyProc {
            child,
            admin: admin.unwrap(),
            listeners,
            stdout: out_lines,
            stderr: err_lines,
            _dir: dir,
            config_path: path,
        }
    }

    /// The outbound listener's address.
    pub fn outbound(&self) -> SocketAddr {
        *self
            .listeners
            .iter()
            .find(|(k, _)| k.starts_with("outbound"))
            .unwrap()
            .1
    }

    pub fn inbound(&self) -> SocketAddr {
        *self
            .listeners
            .iter()
            .find(|(k, _)| k.starts_with("inbound"))
            .unwrap()
            .1
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the proxy has exited (`None`: still running).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    /// Access-log lines parsed as JSON.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The access log once it has at least `n` lines (lines are written when
    /// response bodies end, after the client may already have them).
    pub async fn access_log_n(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.access_log();
            if log.len() >= n || Instant::now() >= deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let (status, _, body) = Client::new().get(self.admin, "admin", path, &[]).await;
        (status, body)
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let (_, body) = self.admin_get(path).await;
        serde_json::from_str(&body).unwrap()
    }

    /// The config version in force.
    pub async fn version(&self) -> u64 {
        self.admin_json("/config_dump").await["version"]
            .as_u64()
            .unwrap()
    }

    /// Asks the proxy to reload its config now (SIGHUP).
    pub fn signal_reload(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -HUP {}", self.pid());
    }

    /// Waits (polling every 2 ms, up to 10 s) until version `want` is in
    /// force; returns the version seen.
    pub async fn wait_version(&self, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.version().await;
            if v >= want {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "version {want} never came into force"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 client.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// GET, returning the client's error instead of panicking on it.
    pub async fn try_get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
    ) -> Result<(StatusCode, String), String> {
        let req = Request::builder()
            .uri(format!("http://{addr}{path}"))
            .header("host", host)
            .body(Empty::new())
            .unwrap();
        let res = self
            .inner
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// GET `path` from `addr` with this Host and headers: status, headers, body.
    pub async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder()
            .uri(format!("http://{addr}{path}"))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .inner
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

/// Polls `done` every 10 ms until it holds; panics naming `what` after 5 s.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// YAML for a Sidecar with one outbound listener on an ephemeral port.
pub fn sidecar() -> String {
    "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  egress:\n  - port: {number: 0, name: http}\n".to_owned()
}

/// YAML for a ServiceEntry `name` (host `name.default.svc.cluster.local`,
/// port 80) with these endpoints and their `version` labels.
pub fn service(name: &str, endpoints: &[(&Backend, &str)]) -> String {
    let addrs: Vec<(SocketAddr, &str)> = endpoints.iter().map(|(b, v)| (b.addr, *v)).collect();
    service_at(name, &addrs)
}

/// [`service`] with endpoints given by address.
pub fn service_at(name: &str, endpoints: &[(SocketAddr, &str)]) -> String {
    let mut y = format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n"
    );
    for (b, version) in endpoints {
        y.push_str(&format!(
            "  - address: 127.0.0.1\n    ports: {{http: {}}}\n    labels: {{version: {version}}}\n",
            b.port()
        ));
    }
    y
}

/// One request as a [`Recorder`] read it, body included.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A hyper backend that reads each request's body to its end before it
/// records the request and answers 200 "ok" (a request whose body fails is
/// counted in `aborted`, not recorded); it counts the connections it accepts.
#[derive(Clone, Debug)]
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    pub aborted: Arc<AtomicUsize>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rec = Recorder {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            connections: Arc::default(),
            aborted: Arc::default(),
        };
        let r = rec.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                r.connections.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = r.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = match body.collect().await {
                            Ok(b) => b.to_bytes(),
                            Err(e) => {
                                r.aborted.fetch_add(1, Ordering::SeqCst);
                                return Err(e);
                            }
                        };
                        r.seen.lock().unwrap().push(Seen {
                            method: parts.method.to_string(),
                            path: parts
                                .uri
                                .path_and_query()
                                .map_or("/".to_owned(), |p| p.to_string()),
                            headers: parts.headers,
                            body,
                        });
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        rec
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|s| s.path).collect()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// What a [`RawBackend`] does with one request head.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Writes these bytes and keeps the connection.
    Send(&'static [u8]),
    /// Writes these bytes and closes the connection.
    SendAndClose(&'static [u8]),
    /// Closes the connection without a byte.
    Close,
}

/// A backend speaking raw bytes: for each request head it reads (up to the
/// blank line; bodies are not expected) it takes the next scripted
/// [`Reply`], then `default` once the script is used up. It counts
/// connections and heads.
#[derive(Clone, Debug)]
pub struct RawBackend {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub heads: Arc<AtomicUsize>,
}

impl RawBackend {
    pub async fn start(script: Vec<Reply>, default: Reply) -> RawBackend {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = RawBackend {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            heads: Arc::default(),
        };
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let b = backend.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                b.connections.fetch_add(1, Ordering::SeqCst);
                let (b, script, default) = (b.clone(), script.clone(), default.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match tcp.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        buf.drain(..end + 4);
                        b.heads.fetch_add(1, Ordering::SeqCst);
                        let reply = script
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or(default.clone());
                        match reply {
                            Reply::Send(bytes) => {
                                if tcp.write_all(bytes).await.is_err() {
                                    return;
                                }
                            }
                            Reply::SendAndClose(bytes) => {
                                let _ = tcp.write_all(bytes).await;
                                return;
                            }
                            Reply::Close => return,
                        }
                    }
                });
            }
        });
        backend
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

/// Writes `request` on a new connection to `addr` and reads the answer until
/// the peer closes (true) or 2 s pass without a byte (false).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The peer may close before taking all of a refused request.
    let _ = tcp.write_all(request).await;
    read_until_closed(&mut tcp, Duration::from_secs(2)).await
}

/// Reads until the peer closes or resets (true) or `quiet` passes without a
/// byte (false).
pub async fn read_until_closed(tcp: &mut tokio::net::TcpStream, quiet: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(quiet, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// The status codes of the HTTP/1.1 responses in `raw`, in order.
pub fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, m)| raw.get(i + m.len()..i + m.len() + 3)?.parse().ok())
        .collect()
}

/// The proxy process's resident memory (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The process's CPU time so far (user + system), from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Clock ticks are 1/100 s on Linux.
    Duration::from_millis(ticks * 10)
}

/// Makes a dev CA in `dir/ca` and, for each `(spiffe id, name)`, an identity
/// in `dir/name` (`ca.pem`, `cert.pem`, `key.pem`) with `mesh-proxy certs`.
pub fn issue_identities(dir: &std::path::Path, ids: &[(&str, &str)]) {
    let certs = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
            .arg("certs")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ca = dir.join("ca");
    certs(&["ca", "--out", ca.to_str().unwrap()]);
    for (id, name) in ids {
        let out = dir.join(name);
        certs(&[
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            "--id",
            id,
            "--out",
            out.to_str().unwrap(),
            "--ttl",
            "1h",
        ]);
    }
}

/// Like [`wait_until`], with an async check (polled every 10 ms, 5 s).
pub async fn wait_until_async<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
