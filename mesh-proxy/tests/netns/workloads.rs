//! What runs in the pods: small apps that know nothing of the mesh, and the
//! sidecar (the real `mesh-proxy` binary, as the proxy user, with its capture
//! rules installed by `mesh-proxy iptables`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Mesh, Pod};

/// Istio's proxy user and group: the capture rules leave its traffic alone.
pub const PROXY_UID: u32 = 1337;

/// An app: answers 200 with its name (503 while `failing`), and shows the
/// `x-forwarded-client-cert` it was given in `x-seen-xfcc`.
#[derive(Clone, Default)]
pub struct App {
    pub hits: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
}

/// Serves `app` on [::]:`port` (IPv4 and IPv6) of the namespace it runs in.
pub async fn serve_app(name: &'static str, app: App, port: u16) {
    let listener = TcpListener::bind(("::", port)).await.unwrap();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                app.hits.fetch_add(1, Ordering::SeqCst);
                let status = if app.failing.load(Ordering::SeqCst) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                let xfcc = req
                    .headers()
                    .get("x-forwarded-client-cert")
                    .cloned()
                    .unwrap_or(http::HeaderValue::from_static("none"));
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("x-seen-xfcc", xfcc)
                            .body(Full::new(Bytes::from(name)))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// A TCP echo server on [::]:`port` (IPv4 and IPv6).
pub async fn serve_echo(port: u16) {
    let listener = TcpListener::bind(("::", port)).await.unwrap();
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let (mut r, mut w) = tcp.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// The `Sidecar` of a pod whose traffic is captured (outbound on
/// 127.0.0.1:15001, and with `dual_stack` also [::1]:15001; inbound on
/// 15006, all addresses) and its STRICT `PeerAuthentication`, as YAML.
pub fn capture_sidecar(dual_stack: bool) -> String {
    let (egress6, ingress_bind) = if dual_stack {
        (
            "  - {port: {number: 15001, name: capture6}, bind: \"::1\", captureMode: IPTABLES}\n",
            ", bind: \"::\"",
        )
    } else {
        ("", "")
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default}}\nspec:\n  egress:\n  - {{port: {{number: 15001, name: capture}}, captureMode: IPTABLES}}\n{egress6}  ingress:\n  - {{port: {{number: 15006, name: capture}}{ingress_bind}, captureMode: IPTABLES}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default}}\nspec: {{mtls: {{mode: STRICT}}}}\n"
    )
}

/// A running sidecar's files.
pub struct Sidecar {
    /// Its stdout: the access log, one JSON object per line.
    pub stdout: PathBuf,
    /// Its stderr.
    pub stderr: PathBuf,
}

impl Sidecar {
    /// The access log so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The access log once it has at least `n` lines (bounded wait: lines
    /// are written in batches).
    pub fn access_log_n(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.access_log();
            if log.len() >= n || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first access-log line `pred` accepts, waiting (bounded) for it.
    pub fn find_line(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.access_log().into_iter().find(|l| pred(l)) {
                return Some(line);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access log lines of one request id.
    pub fn lines_of(&self, request_id: &str) -> usize {
        self.access_log()
            .iter()
            .filter(|l| l["request_id"] == request_id)
            .count()
    }

    /// Waits (bounded) until the access log has a line with this request id
    /// (lines are written when response bodies end).
    pub fn logged(&self, request_id: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.lines_of(request_id) == 0 {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

/// Starts `proxy` (the mesh-proxy binary) as a sidecar in `pod`, as the
/// proxy user, with `config` and an identity for service account `sa` issued
/// by `ca`, its files in `home`; installs the capture rules in the pod; waits
/// until the sidecar is ready.
#[allow(clippy::too_many_arguments)]
pub fn start_sidecar(
    mesh: &Mesh,
    pod: &Pod,
    proxy: &Path,
    home: &Path,
    ca: &mesh_tls::DevCa,
    sa: &str,
    config: &str,
    extra: &[&str],
) -> Sidecar {
    let dir = home.join(&pod.name);
    std::fs::create_dir_all(&dir).unwrap();
    let config_file = dir.join("mesh.yaml");
    std::fs::write(&config_file, config).unwrap();
    let id = mesh_tls::SpiffeId::new("cluster.local", "default", sa).unwrap();
    ca.issue(&id, Duration::from_secs(3600))
        .unwrap()
        .write(dir.join("identity"))
        .unwrap();
    open_up(home);
    let sidecar = Sidecar {
        stdout: dir.join("stdout.log"),
        stderr: dir.join("stderr.log"),
    };
    let mut cmd = Command::new(proxy);
    cmd.args(["run", "-c"])
        .arg(&config_file)
        .arg("--identity")
        .arg(dir.join("identity"))
        .args(["--threads", "1"])
        .args(extra)
        .uid(PROXY_UID)
        .gid(PROXY_UID)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&sidecar.stdout).unwrap())
        .stderr(std::fs::File::create(&sidecar.stderr).unwrap());
    mesh.spawn(pod, cmd).unwrap();
    let out = mesh
        .exec(pod, &[&proxy.to_string_lossy(), "iptables", "--ipv6"])
        .unwrap();
    assert!(
        out.status.success(),
        "mesh-proxy iptables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = mesh.block_in(pod, async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let admin = SocketAddr::from(([127, 0, 0, 1], 15000));
        while http_get(admin, "/ready").await.map(|(s, _)| s) != Some(200) {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    });
    assert!(
        ready,
        "sidecar in {} not ready: {}",
        pod.name,
        std::fs::read_to_string(&sidecar.stderr).unwrap_or_default()
    );
    sidecar
}

/// A bare HTTP/1.0 GET (for the admin server): status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nhost: admin\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Makes `dir` and everything in it readable by the proxy user.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if dir.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            open_up(&e.path());
        }
    }
}
