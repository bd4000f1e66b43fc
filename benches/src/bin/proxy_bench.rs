//! `proxy-bench`: mesh-proxy beside a direct connection, nginx and HAProxy,
//! all on 127.0.0.1, in one command:
//!
//! ```sh
//! cargo run --release -p benches --bin proxy-bench
//! ```
//!
//! It installs nginx, HAProxy and wrk from Debian when they are missing,
//! builds `target/release/mesh-proxy`, starts a fixed upstream (nginx, one
//! worker, `return 200 "ok"`, as in the machine's baseline) and the proxies —
//! mesh-proxy with the full policy stack, mesh-proxy with policies off, nginx,
//! HAProxy (one worker each, keep-alive upstreams) and a pair of mesh-proxies
//! over mTLS — every proxy pinned to core 0, the upstream and the load
//! generators to core 1. Then, interleaved over several rounds: closed loop
//! with `wrk -t1 -c32 -d10s`, and open loop at a fixed rate with the load
//! generator in this binary (a fixed schedule of send times, latency measured
//! from the scheduled time: corrected for coordinated omission). CPU from
//! `/proc/<pid>/stat`, memory from `/proc/<pid>/status`. Medians go to
//! `summary.md` in the run's directory (`target/proxy-bench/<time>/`) and to
//! stdout. See `benches/README.md` for the options and the latest figures.

// A bench may panic on its own setup (a port taken, a tool missing, a proxy
// that does not start): that is a failed run with its message, not an error
// path worth handling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The Host every load generator sends (the mesh routes on it; nginx and
/// HAProxy ignore it).
const HOST: &str = "backend";
const UPSTREAM_PORT: u16 = 18180;
const NGINX_PORT: u16 = 18181;
const HAPROXY_PORT: u16 = 18182;
const MESH_FULL_PORT: u16 = 18183;
const MESH_OFF_PORT: u16 = 18184;
const MTLS_CLIENT_PORT: u16 = 18185;
const MTLS_SERVER_PORT: u16 = 18186;
/// The core every proxy runs on; the upstream and load generators use the other.
const PROXY_CORE: &str = "0";
const LOAD_CORE: &str = "1";
const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/backend";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/bench";

const USAGE: &str = "\
proxy-bench: mesh-proxy beside direct, nginx and HAProxy on 127.0.0.1

USAGE: cargo run --release -p benches --bin proxy-bench -- [OPTIONS]

  --rounds N          interleaved rounds, medians reported (default 3)
  --duration SECS     seconds per measured run (default 10)
  --rate N            open-loop requests per second (default 2000)
  --conns N           connections, closed and open loop (default 32)
  --idle-conns N      idle connections opened to measure bytes per connection (default 500)
  --wait-quiet SECS   wait up to SECS for no rustc and < 0.1 cores of other work (default 600)
  --mesh-proxy PATH   use this mesh-proxy binary instead of building target/release/mesh-proxy
  --out DIR           where raw results and summary.md go (default target/proxy-bench/<time>)
  --only KEYS         measure only these targets, a comma list of direct, full, off, nginx,
                      haproxy, mtls (default: all; keep direct for the added latency and
                      nginx for the ratio to it); every target is still started
  --kinds KINDS       closed, open or both (default closed,open)
";

#[derive(Debug, Clone)]
struct Opts {
    rounds: usize,
    duration: u64,
    rate: u64,
    conns: usize,
    idle_conns: usize,
    wait_quiet: u64,
    mesh_proxy: Option<PathBuf>,
    out: Option<PathBuf>,
    /// Target keys to measure (`None`: all).
    only: Option<Vec<String>>,
    closed: bool,
    open: bool,
}

/// The short keys `--only` takes, by target name.
const TARGET_KEYS: [(&str, &str); 6] = [
    ("direct", "direct"),
    ("full", "mesh-proxy full"),
    ("off", "mesh-proxy off"),
    ("nginx", "nginx"),
    ("haproxy", "haproxy"),
    ("mtls", "mesh-proxy mTLS pair"),
];

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        rounds: 3,
        duration: 10,
        rate: 2000,
        conns: 32,
        idle_conns: 500,
        wait_quiet: 600,
        mesh_proxy: None,
        out: None,
        only: None,
        closed: true,
        open: true,
    };
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--rounds" => o.rounds = num(value()?)?.max(1) as usize,
            "--duration" => o.duration = num(value()?)?.max(1),
            "--rate" => o.rate = num(value()?)?.max(1),
            "--conns" => o.conns = num(value()?)?.max(1) as usize,
            "--idle-conns" => o.idle_conns = num(value()?)? as usize,
            "--wait-quiet" => o.wait_quiet = num(value()?)?,
            "--mesh-proxy" => o.mesh_proxy = Some(PathBuf::from(value()?)),
            "--out" => o.out = Some(PathBuf::from(value()?)),
            "--only" => {
                let keys: Vec<String> = value()?.split(',').map(str::to_owned).collect();
                if let Some(k) = keys
                    .iter()
                    .find(|k| !TARGET_KEYS.iter().any(|(key, _)| key == k))
                {
                    return Err(format!("--only: unknown target {k}"));
                }
                o.only = Some(keys);
            }
            "--kinds" => {
                let v = value()?;
                let kinds: Vec<&str> = v.split(',').collect();
                if let Some(k) = kinds.iter().find(|k| !matches!(**k, "closed" | "open")) {
                    return Err(format!("--kinds: unknown kind {k}"));
                }
                o.closed = kinds.contains(&"closed");
                o.open = kinds.contains(&"open");
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("proxy-bench: {e}");
            }
            eprint!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    // This process is the load generator: pin it (and what it starts) to the
    // load core by running itself again under taskset.
    if std::env::var_os("PROXY_BENCH_PINNED").is_none() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            eprintln!("proxy-bench: needs two cores (proxies on 0, load and upstream on 1)");
            return ExitCode::FAILURE;
        }
        // Install and build first, on both cores.
        ensure_tools();
        let bin = match &opts.mesh_proxy {
            Some(p) => p.clone(),
            None => build_mesh_proxy(&workspace_root()),
        };
        let status = Command::new("taskset")
            .args(["-c", LOAD_CORE])
            .arg(std::env::current_exe().expect("current exe"))
            .args(std::env::args_os().skip(1))
            .env("PROXY_BENCH_PINNED", "1")
            .env("PROXY_BENCH_MESH_PROXY", bin)
            .status()
            .expect("taskset (util-linux)");
        return if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    run(&opts);
    ExitCode::SUCCESS
}

// ===== setup =====

fn log(msg: impl std::fmt::Display) {
    eprintln!("proxy-bench: {msg}");
}

fn sh(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_owned()
        }
        Err(e) => format!("({cmd}: {e})"),
    }
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

/// Installs nginx, HAProxy and wrk from Debian when one is missing.
fn ensure_tools() {
    let missing: Vec<&str> = ["nginx", "haproxy", "wrk"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        return;
    }
    log(format_args!(
        "missing {missing:?}: apt-get install -y nginx-light haproxy wrk"
    ));
    if sh("id", &["-u"]) != "0" {
        panic!("not root: install them with `sudo apt-get install -y nginx-light haproxy wrk`");
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "nginx-light", "haproxy", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "apt-get install failed");
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// Builds `target/release/mesh-proxy` (cargo serialises with other builds).
fn build_mesh_proxy(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    log("building mesh-proxy (cargo build --release -p mesh-proxy)");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "mesh-proxy"])
        .current_dir(root)
        .status()
        .expect("cargo");
    assert!(status.success(), "building mesh-proxy failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("release").join("mesh-proxy")
}

// ===== /proc =====

/// Fields of `/proc/<pid>/stat` after the command name: (ppid, utime, stime,
/// cutime, cstime) in clock ticks.
/// (ppid, utime, stime, cutime, cstime) of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, u64, u64, u64, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// [`proc_stat`]'s fields from the text of a `stat` file. The command name
/// (in parentheses) may itself hold spaces and parentheses: the fields are
/// counted from the last `)`.
fn parse_stat(s: &str) -> Option<(u32, u64, u64, u64, u64)> {
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((f.get(1)?.parse().ok()?, n(11)?, n(12)?, n(13)?, n(14)?))
}

/// The pids of these processes and their children (nginx's workers).
fn family(pids: &[u32]) -> Vec<u32> {
    let mut all = pids.to_vec();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, ..)) = proc_stat(pid)
                && pids.contains(&ppid)
            {
                all.push(pid);
            }
        }
    }
    all
}

/// utime + stime of these processes (all their threads), in ticks.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| proc_stat(*p))
        .map(|(_, u, s, ..)| u + s)
        .sum()
}

/// User time of this process and its waited-for children (wrk), in ticks.
fn self_user_ticks() -> u64 {
    let (_, u, _, cu, _) = proc_stat(std::process::id()).unwrap_or_default();
    u + cu
}

fn user_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| proc_stat(*p))
        .map(|(_, u, ..)| u)
        .sum()
}

/// The machine's (user+nice, steal) ticks over all CPUs from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

/// [`machine_ticks`] from the text of `/proc/stat` (its first, `cpu`, line).
fn parse_machine_ticks(s: &str) -> (u64, u64) {
    let line = s.lines().next().unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    (get(0) + get(1), get(7))
}

/// Sum of VmRSS, of VmHWM and of RssAnon (kB) over these processes. RssAnon
/// is the private part of VmRSS; the rest (RssFile) is mostly the binary's
/// and libraries' code, mapped from the page cache and shared with every
/// process running the same files.
fn rss_kb(pids: &[u32]) -> (u64, u64, u64) {
    let mut rss = 0;
    let mut hwm = 0;
    let mut anon = 0;
    for p in pids {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        let (r, h, a) = parse_status(&s);
        rss += r;
        hwm += h;
        anon += a;
    }
    (rss, hwm, anon)
}

/// VmRSS, VmHWM and RssAnon (kB) from the text of a `/proc/<pid>/status`
/// file (0 for a field it lacks).
fn parse_status(s: &str) -> (u64, u64, u64) {
    let (mut rss, mut hwm, mut anon) = (0, 0, 0);
    for line in s.lines() {
        let kb = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmRSS:") {
            rss = kb();
        } else if line.starts_with("VmHWM:") {
            hwm = kb();
        } else if line.starts_with("RssAnon:") {
            anon = kb();
        }
    }
    (rss, hwm, anon)
}

/// Pids of running `rustc` processes (other engineers compiling).
fn rustc_pids() -> Vec<u32> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "rustc")
            {
                found.push(pid);
            }
        }
    }
    found
}

// ===== processes =====

/// The processes this run started; each is stopped by its pid (SIGTERM, so
/// nginx's master stops its worker), then waited for.
#[derive(Debug, Default)]
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pid = child.id();
        self.0.push((name.to_owned(), child));
        pid
    }

    fn stop_all(&mut self) {
        for (_, c) in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for (name, c) in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(None) => {
                        log(format_args!("{name} ignored SIGTERM; killing it"));
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn pinned(core: &str, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", core]).arg(program);
    c
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn nginx_conf(run: &Path, role: &str, body: &str) -> PathBuf {
    let dir = run.join(role);
    std::fs::create_dir_all(&dir).expect("run dir");
    let d = dir.display();
    let conf = format!(
        "# proxy-bench {role}: one worker, as in ../shared/reference/baseline/\n\
worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
events {{ worker_connections 4096; }}\n\
http {{\n  access_log off;\n  default_type text/plain;\n  keepalive_requests 1000000;\n  keepalive_timeout 75s;\n\
  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{body}}}\n"
    );
    let path = dir.join("nginx.conf");
    write(&path, &conf);
    path
}

fn start_nginx(procs: &mut Procs, run: &Path, role: &str, core: &str, body: &str) -> u32 {
    let conf = nginx_conf(run, role, body);
    let dir = run.join(role);
    procs.spawn(
        &format!("nginx {role}"),
        pinned(core, Path::new("nginx"))
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null()),
    )
}

fn start_haproxy(procs: &mut Procs, run: &Path) -> u32 {
    let path = run.join("haproxy.cfg");
    write(
        &path,
        &format!(
            "# proxy-bench: HAProxy, one thread, keep-alive both sides, idle server connections reused\n\
global\n    nbthread 1\n    maxconn 4096\n\
defaults\n    mode http\n    option http-keep-alive\n    timeout connect 5s\n    timeout client 30s\n\
    timeout server 30s\n    timeout http-keep-alive 75s\n    http-reuse always\n\
frontend fe\n    bind 127.0.0.1:{HAPROXY_PORT}\n    default_backend be\n\
backend be\n    server s1 127.0.0.1:{UPSTREAM_PORT}\n"
        ),
    );
    let log_file = std::fs::File::create(run.join("haproxy.log")).expect("haproxy.log");
    procs.spawn(
        "haproxy",
        pinned(PROXY_CORE, Path::new("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file),
    )
}

/// Starts `mesh-proxy run` pinned to the proxy core with one worker thread;
/// the access log (stdout) goes to /dev/null, stderr to `<name>.log`; returns
/// once it prints `mesh-proxy: ready`.
fn start_mesh(
    procs: &mut Procs,
    bin: &Path,
    run: &Path,
    name: &str,
    yaml: &str,
    identity: Option<&Path>,
) -> u32 {
    let config = run.join(format!("{name}.yaml"));
    write(&config, yaml);
    let check = sh(
        bin.to_str().expect("utf-8 path"),
        &["validate", config.to_str().expect("utf-8 path")],
    );
    if !check.is_empty() {
        log(format_args!("{name}.yaml: {check}"));
    }
    let mut cmd = pinned(PROXY_CORE, bin);
    cmd.args(["run", "-c"])
        .arg(&config)
        .args(["--admin", "127.0.0.1:0", "--threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(dir) = identity {
        cmd.arg("--identity").arg(dir);
    }
    let pid = procs.spawn(name, &mut cmd);
    let stderr = procs
        .0
        .last_mut()
        .and_then(|(_, c)| c.stderr.take())
        .expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut log_file = std::fs::File::create(run.join(format!("{name}.log"))).expect("log file");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log_file, "{line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line == "mesh-proxy: ready" => return pid,
            Ok(_) => {}
            Err(_) => panic!(
                "{name} did not start; see {}",
                run.join(format!("{name}.log")).display()
            ),
        }
    }
}

fn service_entry(port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {HOST}}}\nspec:\n  hosts: [{HOST}.default.svc.cluster.local]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {port}}}\n"
    )
}

fn egress(port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: bench}}\nspec:\n  egress:\n  - port: {{number: {port}, name: http}}\n---\n"
    )
}

/// The full policy stack: least request, outlier detection, retries with a
/// budget, an overall and a per-try timeout (metrics and the access log are
/// always on in `mesh-proxy run`).
fn full_policies(tls: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {HOST}}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer: {{simple: LEAST_REQUEST}}\n    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 10}}\n    retryBudget: {{percent: 20, minRetryConcurrency: 3}}\n{tls}\
---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {HOST}}}\nspec:\n  hosts: [{HOST}]\n  http:\n  - route: [{{destination: {{host: {HOST}}}}}]\n    timeout: 5s\n    retries: {{attempts: 2, retryOn: \"5xx,connect-failure,reset\", perTryTimeout: 2s}}\n"
    )
}

/// Policies off: round robin, no outlier detection, no retries, no timeout.
fn no_policies() -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {HOST}}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n\
---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {HOST}}}\nspec:\n  hosts: [{HOST}]\n  http:\n  - route: [{{destination: {{host: {HOST}}}}}]\n    retries: {{attempts: 0}}\n"
    )
}

fn certs(bin: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .arg("certs")
        .args(args)
        .output()
        .expect("mesh-proxy certs");
    assert!(
        out.status.success(),
        "mesh-proxy certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ===== HTTP clients =====

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn request() -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("/")
        .header(http::header::HOST, HOST)
        .body(Empty::new())
        .expect("request")
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One GET: the status and the body.
async fn get(sender: &mut SendRequest<Empty<Bytes>>) -> Result<(StatusCode, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let res = sender
        .send_request(request())
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Waits until `addr` answers 200 "ok".
fn wait_ok(name: &str, addr: SocketAddr) {
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        let r = rt.block_on(async {
            let mut s = connect(addr).await?;
            get(&mut s).await
        });
        match r {
            Ok((StatusCode::OK, body)) if &body[..] == b"ok" => return,
            Ok((status, body)) => last = format!("{status} {body:?}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{name} at {addr} did not answer 200 ok: {last}");
}

/// Opens `n` connections to `addr`, one request each, and returns the RSS
/// growth of `pids` per connection in bytes while they are open and idle.
fn bytes_per_idle_conn(addr: SocketAddr, pids: &[u32], n: usize) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let rt = runtime();
    rt.block_on(async {
        let before = rss_kb(&family(pids)).0;
        let mut open = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = connect(addr).await.ok()?;
            get(&mut s).await.ok()?;
            open.push(s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kb(&family(pids)).0;
        drop(open);
        Some((after.saturating_sub(before) * 1024) as f64 / n as f64)
    })
}

#[derive(Debug, Default)]
struct OpenLoop {
    ok: u64,
    errors: u64,
    achieved_rps: f64,
    /// Latencies from the scheduled send time, ns, sorted.
    latency: Vec<u64>,
}

/// Open loop: `rate` requests per second on a fixed schedule over `conns`
/// connections. A scheduler thread releases each request at its scheduled
/// time (precise sleeps, not tokio's 1 ms timer); a free connection takes it;
/// latency is measured from the scheduled time, so a request that waited for
/// a busy connection counts its wait (the coordinated-omission correction).
fn open_loop(addr: SocketAddr, rate: u64, conns: usize, duration: Duration) -> OpenLoop {
    let rt = runtime();
    rt.block_on(async move {
        let mut senders = Vec::with_capacity(conns);
        for _ in 0..conns {
            senders.push(connect(addr).await.expect("open-loop connect"));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let total = (rate as f64 * duration.as_secs_f64()) as u64;
        let period_ns = 1e9 / rate as f64;
        let start = Instant::now() + Duration::from_millis(20);
        let scheduler = std::thread::spawn(move || {
            for i in 0..total {
                let at = start + Duration::from_nanos((i as f64 * period_ns) as u64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                if tx.send(at).is_err() {
                    break;
                }
            }
        });
        let mut workers = Vec::with_capacity(conns);
        for mut sender in senders {
            let rx = rx.clone();
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut last = start;
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(at) = next else { break };
                    match get(&mut sender).await {
                        Ok((StatusCode::OK, _)) => {
                            let now = Instant::now();
                            last = last.max(now);
                            lat.push(u64::try_from((now - at).as_nanos()).unwrap_or(u64::MAX));
                        }
                        _ => {
                            errors += 1;
                            if let Ok(s) = connect(addr).await {
                                sender = s;
                            }
                        }
                    }
                }
                (lat, errors, last)
            }));
        }
        let mut out = OpenLoop::default();
        let mut last = start;
        for w in workers {
            let (lat, errors, l) = w.await.expect("worker");
            out.latency.extend(lat);
            out.errors += errors;
            last = last.max(l);
        }
        let _ = scheduler.join();
        out.ok = out.latency.len() as u64;
        out.achieved_rps = out.ok as f64 / (last - start).as_secs_f64().max(1e-9);
        out.latency.sort_unstable();
        out
    })
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1e6
}

// ===== wrk =====

#[derive(Debug, Default)]
struct Wrk {
    rps: f64,
    requests: u64,
    p50: f64,
    p99: f64,
    errors: String,
}

fn wrk_ms(v: &str) -> f64 {
    let (num, mul) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        (v, f64::NAN)
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * mul)
}

fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            w.rps = v.trim().parse().unwrap_or(f64::NAN);
        } else if t.contains(" requests in ") {
            w.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("50%") {
            w.p50 = wrk_ms(v.trim());
        } else if let Some(v) = t.strip_prefix("99%") {
            w.p99 = wrk_ms(v.trim());
        } else if t.starts_with("Non-2xx") || t.starts_with("Socket errors") {
            if !w.errors.is_empty() {
                w.errors.push_str("; ");
            }
            w.errors.push_str(t);
        }
    }
    w
}

fn wrk(addr: SocketAddr, conns: usize, secs: u64) -> String {
    let out = Command::new("taskset")
        .args(["-c", LOAD_CORE, "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .args(["--latency", "-H"])
        .arg(format!("Host: {HOST}"))
        .arg(format!("http://{addr}/"))
        .output()
        .expect("wrk");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

// ===== measuring =====

#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// The proxy processes (their children are found at each run).
    pids: Vec<u32>,
}

#[derive(Debug, Default, Clone)]
struct Sample {
    rps: f64,
    requests: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: String,
    wall: f64,
    proxy_ticks: u64,
    upstream_ticks: u64,
    /// Cores of user time spent by processes other than ours (other work).
    foreign_cores: f64,
    steal_cores: f64,
    rustc_seen: bool,
    rss_max_kb: u64,
    /// The largest RssAnon sampled (the private part of `rss_max_kb`).
    anon_max_kb: u64,
    hwm_kb: u64,
}

struct Ctx {
    opts: Opts,
    upstream: Vec<u32>,
    clk_tck: f64,
    out: PathBuf,
}

/// Runs `f` (a load) against `target`, sampling memory and other work while
/// it runs, and CPU before and after.
fn measure<F: FnOnce() -> Sample>(ctx: &Ctx, target: &Target, f: F) -> Sample {
    let proxy = family(&target.pids);
    let upstream = family(&ctx.upstream);
    let ours: Vec<u32> = proxy.iter().chain(&upstream).copied().collect();
    let stop = AtomicBool::new(false);
    let (p0, u0, su0, (m0, st0), ou0) = (
        cpu_ticks(&proxy),
        cpu_ticks(&upstream),
        self_user_ticks(),
        machine_ticks(),
        user_ticks(&ours),
    );
    let t0 = Instant::now();
    let (mut sample, (rss_max, anon_max), rustc_seen) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut max = (0, 0);
            let mut rustc = false;
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (rss, _, anon) = rss_kb(&proxy);
                max = (max.0.max(rss), max.1.max(anon));
                if i.is_multiple_of(4) {
                    rustc |= !rustc_pids().is_empty();
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            (max, rustc)
        });
        let s = f();
        stop.store(true, Ordering::Relaxed);
        let (max, rustc) = sampler.join().expect("sampler");
        (s, max, rustc)
    });
    let wall = t0.elapsed().as_secs_f64();
    let (p1, u1, su1, (m1, st1), ou1) = (
        cpu_ticks(&proxy),
        cpu_ticks(&upstream),
        self_user_ticks(),
        machine_ticks(),
        user_ticks(&ours),
    );
    let ours_user = (ou1 - ou0) + (su1 - su0);
    sample.wall = wall;
    sample.proxy_ticks = p1.saturating_sub(p0);
    sample.upstream_ticks = u1.saturating_sub(u0);
    sample.foreign_cores = (m1 - m0).saturating_sub(ours_user) as f64 / ctx.clk_tck / wall;
    sample.steal_cores = (st1 - st0) as f64 / ctx.clk_tck / wall;
    sample.rustc_seen = rustc_seen;
    sample.rss_max_kb = rss_max;
    sample.anon_max_kb = anon_max;
    sample.hwm_kb = rss_kb(&proxy).1;
    sample
}

fn closed_run(ctx: &Ctx, target: &Target, round: usize) -> Sample {
    let (conns, secs) = (ctx.opts.conns, ctx.opts.duration);
    let mut raw = String::new();
    let s = measure(ctx, target, || {
        raw = wrk(target.addr, conns, secs);
        let w = parse_wrk(&raw);
        Sample {
            rps: w.rps,
            requests: w.requests,
            p50: w.p50,
            p99: w.p99,
            p999: f64::NAN,
            errors: w.errors,
            ..Sample::default()
        }
    });
    write(
        &ctx.out.join(format!("wrk-{}-r{round}.txt", target.name)),
        &raw,
    );
    s
}

fn open_run(ctx: &Ctx, target: &Target, round: usize) -> Sample {
    let (rate, conns, secs) = (ctx.opts.rate, ctx.opts.conns, ctx.opts.duration);
    measure(ctx, target, || {
        let r = open_loop(target.addr, rate, conns, Duration::from_secs(secs));
        let mut hist = String::new();
        for p in [0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            let _ = writeln!(
                hist,
                "p{:<7} {:.3} ms",
                p * 100.0,
                percentile_ms(&r.latency, p)
            );
        }
        let _ = writeln!(
            hist,
            "ok {} errors {} achieved {:.1} req/s",
            r.ok, r.errors, r.achieved_rps
        );
        write(
            &ctx.out.join(format!("open-{}-r{round}.txt", target.name)),
            &hist,
        );
        Sample {
            rps: r.achieved_rps,
            requests: r.ok,
            p50: percentile_ms(&r.latency, 0.5),
            p99: percentile_ms(&r.latency, 0.99),
            p999: percentile_ms(&r.latency, 0.999),
            errors: if r.errors > 0 {
                format!("{} failed", r.errors)
            } else {
                String::new()
            },
            ..Sample::default()
        }
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn med<F: Fn(&Sample) -> f64>(samples: &[Sample], f: F) -> f64 {
    median(samples.iter().map(f).collect())
}

fn mb(kb: f64) -> String {
    if kb.is_finite() && kb > 0.0 {
        format!("{:.1}", kb / 1024.0)
    } else {
        "–".into()
    }
}

fn opt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

// ===== the run =====

/// Waits (up to `max` seconds) until no `rustc` runs and the other
/// processes on the machine use under 0.1 cores of user time over 2 s.
fn wait_quiet(max: u64, clk_tck: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(max);
    let started = Instant::now();
    let mut said = false;
    loop {
        let (m0, _) = machine_ticks();
        let s0 = self_user_ticks();
        std::thread::sleep(Duration::from_secs(2));
        let (m1, _) = machine_ticks();
        let others = (m1 - m0).saturating_sub(self_user_ticks() - s0) as f64 / clk_tck / 2.0;
        let rustc = rustc_pids().len();
        let waited = started.elapsed().as_secs();
        if rustc == 0 && others < 0.1 {
            return format!("quiet after {waited} s: no rustc, other processes {others:.2} cores");
        }
        if Instant::now() >= deadline {
            return format!(
                "NOT quiet after waiting {max} s ({rustc} rustc processes, other processes {others:.2} cores): measured anyway, expect noise"
            );
        }
        if !said {
            log(format_args!(
                "{rustc} rustc processes, other processes {others:.2} cores; waiting up to {max} s for a quiet machine"
            ));
            said = true;
        }
    }
}

fn run(opts: &Opts) {
    let root = workspace_root();
    let bin = std::env::var_os("PROXY_BENCH_MESH_PROXY")
        .map(PathBuf::from)
        .expect("set by the unpinned parent");
    let stamp = sh("date", &["-u", "+%Y%m%dT%H%M%SZ"]);
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| root.join("target").join("proxy-bench").join(&stamp));
    std::fs::create_dir_all(&out).expect("output dir");
    let run_dir = out.join("run");
    std::fs::create_dir_all(&run_dir).expect("run dir");
    log(format_args!("results in {}", out.display()));

    for port in [
        UPSTREAM_PORT,
        NGINX_PORT,
        HAPROXY_PORT,
        MESH_FULL_PORT,
        MESH_OFF_PORT,
        MTLS_CLIENT_PORT,
        MTLS_SERVER_PORT,
    ] {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            panic!("127.0.0.1:{port} is taken ({e}): is another proxy-bench running?");
        }
    }

    let mut procs = Procs::default();
    let upstream = start_nginx(
        &mut procs,
        &run_dir,
        "upstream",
        LOAD_CORE,
        &format!(
            "  server {{\n    listen 127.0.0.1:{UPSTREAM_PORT};\n    location / {{ return 200 \"ok\"; }}\n  }}\n"
        ),
    );
    let nginx = start_nginx(
        &mut procs,
        &run_dir,
        "nginx",
        PROXY_CORE,
        &format!(
            "  upstream backend {{\n    server 127.0.0.1:{UPSTREAM_PORT};\n    keepalive 64;\n    keepalive_requests 1000000;\n  }}\n\
  server {{\n    listen 127.0.0.1:{NGINX_PORT};\n    location / {{\n      proxy_pass http://backend;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n"
        ),
    );
    let haproxy = start_haproxy(&mut procs, &run_dir);
    let mesh_full = start_mesh(
        &mut procs,
        &bin,
        &run_dir,
        "mesh-full",
        &(egress(MESH_FULL_PORT) + &service_entry(UPSTREAM_PORT) + &full_policies("")),
        None,
    );
    let mesh_off = start_mesh(
        &mut procs,
        &bin,
        &run_dir,
        "mesh-off",
        &(egress(MESH_OFF_PORT) + &service_entry(UPSTREAM_PORT) + &no_policies()),
        None,
    );
    let ca = run_dir.join("ca");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    certs(&bin, &["ca", "--out", &s(&ca)]);
    for (id, dir) in [(SERVER_ID, "server-id"), (CLIENT_ID, "client-id")] {
        certs(
            &bin,
            &[
                "issue",
                "--ca",
                &s(&ca),
                "--id",
                id,
                "--out",
                &s(&run_dir.join(dir)),
                "--ttl",
                "24h",
            ],
        );
    }
    let mtls_server = start_mesh(
        &mut procs,
        &bin,
        &run_dir,
        "mtls-server",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {HOST}}}\nspec:\n  ingress:\n  - port: {{number: {MTLS_SERVER_PORT}, name: http}}\n    defaultEndpoint: 127.0.0.1:{UPSTREAM_PORT}\n\
---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default}}\nspec: {{mtls: {{mode: STRICT}}}}\n"
        ),
        Some(&run_dir.join("server-id")),
    );
    let mtls_client = start_mesh(
        &mut procs,
        &bin,
        &run_dir,
        "mtls-client",
        &(egress(MTLS_CLIENT_PORT)
            + &service_entry(MTLS_SERVER_PORT)
            + &full_policies(&format!(
                "    tls: {{mode: ISTIO_MUTUAL, subjectAltNames: [{SERVER_ID}]}}\n"
            ))),
        Some(&run_dir.join("client-id")),
    );

    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let targets = vec![
        Target {
            name: "direct",
            addr: addr(UPSTREAM_PORT),
            pids: vec![],
        },
        Target {
            name: "mesh-proxy full",
            addr: addr(MESH_FULL_PORT),
            pids: vec![mesh_full],
        },
        Target {
            name: "mesh-proxy off",
            addr: addr(MESH_OFF_PORT),
            pids: vec![mesh_off],
        },
        Target {
            name: "nginx",
            addr: addr(NGINX_PORT),
            pids: vec![nginx],
        },
        Target {
            name: "haproxy",
            addr: addr(HAPROXY_PORT),
            pids: vec![haproxy],
        },
        Target {
            name: "mesh-proxy mTLS pair",
            addr: addr(MTLS_CLIENT_PORT),
            pids: vec![mtls_client, mtls_server],
        },
    ];
    let wanted = |name: &str| {
        opts.only.as_ref().is_none_or(|keys| {
            TARGET_KEYS
                .iter()
                .any(|(key, n)| *n == name && keys.iter().any(|k| k == key))
        })
    };
    let targets: Vec<Target> = targets.into_iter().filter(|t| wanted(t.name)).collect();
    for t in &targets {
        wait_ok(t.name, t.addr);
    }
    log("all targets answer 200 ok");

    // Idle memory before any load.
    let mut idle = BTreeMap::new();
    for t in targets.iter().filter(|t| !t.pids.is_empty()) {
        idle.insert(t.name, (rss_kb(&family(&t.pids)).0, None));
    }

    let clk_tck = sh("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0);
    let quiet = wait_quiet(opts.wait_quiet, clk_tck);
    log(&quiet);
    let ctx = Ctx {
        opts: opts.clone(),
        upstream: vec![upstream],
        clk_tck,
        out: out.clone(),
    };
    let env = environment(opts, &bin, &quiet);
    write(&out.join("env.txt"), &env);

    log("warm-up: 2 s of wrk per target");
    for t in &targets {
        let _ = wrk(t.addr, opts.conns, 2);
    }
    let mut closed: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut open: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut raw = String::from(
        "kind\ttarget\tround\trps\trequests\tp50_ms\tp99_ms\tp999_ms\twall_s\tproxy_ticks\tupstream_ticks\tforeign_cores\tsteal_cores\trustc_seen\trss_max_kb\tanon_max_kb\thwm_kb\terrors\n",
    );
    let record = |raw: &mut String, kind: &str, t: &Target, round: usize, s: &Sample| {
        let _ = writeln!(
            raw,
            "{kind}\t{}\t{round}\t{:.1}\t{}\t{:.3}\t{:.3}\t{:.3}\t{:.2}\t{}\t{}\t{:.3}\t{:.3}\t{}\t{}\t{}\t{}\t{}",
            t.name,
            s.rps,
            s.requests,
            s.p50,
            s.p99,
            s.p999,
            s.wall,
            s.proxy_ticks,
            s.upstream_ticks,
            s.foreign_cores,
            s.steal_cores,
            s.rustc_seen,
            s.rss_max_kb,
            s.anon_max_kb,
            s.hwm_kb,
            s.errors
        );
        log(format_args!(
            "{kind} {} round {round}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, proxy {:.2} cores{}{}",
            t.name,
            s.rps,
            s.p50,
            s.p99,
            s.proxy_ticks as f64 / ctx.clk_tck / s.wall,
            if s.errors.is_empty() {
                String::new()
            } else {
                format!(", {}", s.errors)
            },
            if s.rustc_seen { ", rustc running" } else { "" },
        ));
        write(&ctx.out.join("raw.tsv"), raw);
    };
    for round in (1..=opts.rounds).filter(|_| opts.closed) {
        for t in &targets {
            let s = closed_run(&ctx, t, round);
            record(&mut raw, "closed", t, round, &s);
            closed.entry(t.name).or_default().push(s);
        }
    }
    for round in (1..=opts.rounds).filter(|_| opts.open) {
        for t in &targets {
            let s = open_run(&ctx, t, round);
            record(&mut raw, "open", t, round, &s);
            open.entry(t.name).or_default().push(s);
        }
    }
    // Bytes per idle connection last: the allocator keeps what the
    // connections used, which would inflate the RSS under load.
    for t in targets.iter().filter(|t| !t.pids.is_empty()) {
        let per_conn = bytes_per_idle_conn(t.addr, &t.pids, opts.idle_conns);
        if let Some(v) = idle.get_mut(t.name) {
            v.1 = per_conn;
        }
    }
    procs.stop_all();

    let summary = summarize(&ctx, &targets, &closed, &open, &idle, &env);
    write(&out.join("summary.md"), &summary);
    println!("{summary}");
    log(format_args!(
        "raw results and summary.md in {}",
        out.display()
    ));
}

fn environment(opts: &Opts, bin: &Path, quiet: &str) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let root = workspace_root();
    let rev = sh(
        "git",
        &[
            "-C",
            root.to_str().unwrap_or("."),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    format!(
        "date: {}\nmachine: {} CPUs, {model}, kernel {}\nmesh-proxy: {} (commit {rev})\n{}\n{}\n{}\n\
options: rounds {} duration {} s, conns {}, open-loop rate {} req/s, idle conns {}\n\
quiet: {quiet}\n",
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        sh("nproc", &["--all"]),
        sh("uname", &["-r"]),
        bin.display(),
        sh("nginx", &["-v"]),
        sh("haproxy", &["-v"]).lines().next().unwrap_or_default(),
        sh("wrk", &["-v"]).lines().next().unwrap_or_default(),
        opts.rounds,
        opts.duration,
        opts.conns,
        opts.rate,
        opts.idle_conns,
    )
}

fn summarize(
    ctx: &Ctx,
    targets: &[Target],
    closed: &BTreeMap<&str, Vec<Sample>>,
    open: &BTreeMap<&str, Vec<Sample>>,
    idle: &BTreeMap<&str, (u64, Option<f64>)>,
    env: &str,
) -> String {
    let clk = ctx.clk_tck;
    let cores = |s: &Sample| s.proxy_ticks as f64 / clk / s.wall;
    let us_per_req = |s: &Sample| s.proxy_ticks as f64 / clk / s.requests.max(1) as f64 * 1e6;
    let mut o = String::new();
    let _ = writeln!(o, "```text\n{}```\n", env);
    let rps = |name: &str| closed.get(name).map_or(f64::NAN, |s| med(s, |x| x.rps));
    let (direct, nginx) = (rps("direct"), rps("nginx"));
    let _ = writeln!(
        o,
        "Closed loop (wrk -t1 -c{} -d{}s), medians of {} interleaved rounds; proxy CPU summed over its processes:\n",
        ctx.opts.conns, ctx.opts.duration, ctx.opts.rounds
    );
    let _ = writeln!(
        o,
        "| target | req/s | × direct | × nginx | p50 ms | p99 ms | proxy cores | µs CPU / req | errors |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    for t in targets {
        let Some(s) = closed.get(t.name) else {
            continue;
        };
        let r = med(s, |x| x.rps);
        let proxied = !t.pids.is_empty();
        let errors: Vec<&str> = s
            .iter()
            .map(|x| x.errors.as_str())
            .filter(|e| !e.is_empty())
            .collect();
        let _ = writeln!(
            o,
            "| {} | {:.0} | {} | {} | {:.3} | {:.3} | {} | {} | {} |",
            t.name,
            r,
            opt(r / direct, 2),
            opt(r / nginx, 2),
            med(s, |x| x.p50),
            med(s, |x| x.p99),
            if proxied {
                opt(med(s, cores), 2)
            } else {
                "–".into()
            },
            if proxied {
                opt(med(s, us_per_req), 1)
            } else {
                "–".into()
            },
            if errors.is_empty() {
                "0".into()
            } else {
                errors.join("; ")
            },
        );
    }
    let base = |f: fn(&Sample) -> f64| open.get("direct").map_or(f64::NAN, |s| med(s, f));
    let (b50, b99, b999) = (base(|x| x.p50), base(|x| x.p99), base(|x| x.p999));
    let _ = writeln!(
        o,
        "\nOpen loop at {} req/s over {} connections, {} s, latency from the scheduled send time (corrected for coordinated omission), medians of {} rounds; added = target − direct:\n",
        ctx.opts.rate, ctx.opts.conns, ctx.opts.duration, ctx.opts.rounds
    );
    let _ = writeln!(
        o,
        "| target | achieved req/s | p50 ms | p99 ms | p99.9 ms | added p50 | added p99 | added p99.9 | vCPU per 1,000 req/s | µs CPU / req | errors |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
    for t in targets {
        let Some(s) = open.get(t.name) else { continue };
        let proxied = !t.pids.is_empty();
        let (p50, p99, p999) = (med(s, |x| x.p50), med(s, |x| x.p99), med(s, |x| x.p999));
        let added = |v: f64, b: f64| {
            if proxied {
                format!("{:+.3}", v - b)
            } else {
                "–".into()
            }
        };
        let errors: u64 = s
            .iter()
            .filter_map(|x| {
                x.errors
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum();
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
            t.name,
            med(s, |x| x.rps),
            p50,
            p99,
            p999,
            added(p50, b50),
            added(p99, b99),
            added(p999, b999),
            if proxied {
                opt(med(s, |x| cores(x) / (x.rps / 1000.0)), 3)
            } else {
                "–".into()
            },
            if proxied {
                opt(med(s, us_per_req), 1)
            } else {
                "–".into()
            },
            errors,
        );
    }
    let _ = writeln!(
        o,
        "\nMemory of the proxy processes (summed; the mTLS pair is both sidecars): idle after start; under the open-loop load (largest VmRSS sampled every 250 ms), and of it the private memory (largest RssAnon: the rest is code and data mapped from files, shared by every process running them); peak VmHWM over the whole run; bytes per idle connection from {} connections held open after one request each:\n",
        ctx.opts.idle_conns
    );
    let _ = writeln!(
        o,
        "| target | RSS idle MB | RSS at {} req/s MB | of which private (RssAnon) MB | peak (VmHWM) MB | bytes / idle connection |",
        ctx.opts.rate
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for t in targets.iter().filter(|t| !t.pids.is_empty()) {
        let (idle_kb, per_conn) = idle.get(t.name).copied().unwrap_or((0, None));
        let under = open
            .get(t.name)
            .map_or(f64::NAN, |s| med(s, |x| x.rss_max_kb as f64));
        let private = open
            .get(t.name)
            .map_or(f64::NAN, |s| med(s, |x| x.anon_max_kb as f64));
        let peak = open
            .get(t.name)
            .into_iter()
            .chain(closed.get(t.name))
            .flatten()
            .map(|x| x.hwm_kb)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            t.name,
            mb(idle_kb as f64),
            mb(under),
            mb(private),
            mb(peak as f64),
            per_conn.map_or("–".into(), |b| format!("{b:.0}")),
        );
    }
    let all: Vec<&Sample> = closed.values().chain(open.values()).flatten().collect();
    let rustc_runs = all.iter().filter(|s| s.rustc_seen).count();
    let foreign = median(all.iter().map(|s| s.foreign_cores).collect());
    let foreign_max = all.iter().map(|s| s.foreign_cores).fold(0.0, f64::max);
    let steal = all.iter().map(|s| s.steal_cores).fold(0.0, f64::max);
    let _ = writeln!(
        o,
        "\nNoise: rustc seen during {rustc_runs} of {} runs; user CPU of other processes: median {foreign:.2}, max {foreign_max:.2} cores; steal max {steal:.2} cores.",
        all.len()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Opts, String> {
        parse_args(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn arguments_default_and_override() {
        let o = args("").unwrap();
        assert_eq!((o.rounds, o.duration, o.rate, o.conns), (3, 10, 2000, 32));
        assert_eq!((o.idle_conns, o.wait_quiet), (500, 600));
        assert!(o.only.is_none() && o.closed && o.open && o.mesh_proxy.is_none());

        let o = args("--rounds 0 --duration 5 --rate 100 --conns 8 --idle-conns 0 --only direct,full,nginx --kinds open --mesh-proxy /tmp/mp").unwrap();
        // Zero rounds would measure nothing: at least one.
        assert_eq!(
            (o.rounds, o.duration, o.rate, o.conns, o.idle_conns),
            (1, 5, 100, 8, 0)
        );
        assert_eq!(o.only.unwrap(), ["direct", "full", "nginx"]);
        assert!(!o.closed && o.open);
        assert_eq!(o.mesh_proxy.unwrap(), PathBuf::from("/tmp/mp"));
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        assert_eq!(
            args("--only direct,envoy").unwrap_err(),
            "--only: unknown target envoy"
        );
        assert_eq!(
            args("--kinds closed,half").unwrap_err(),
            "--kinds: unknown kind half"
        );
        assert_eq!(args("--rounds").unwrap_err(), "--rounds needs a value");
        assert!(args("--rate fast").unwrap_err().starts_with("--rate: "));
        assert_eq!(args("--fast").unwrap_err(), "unknown argument --fast");
        // Help is an empty error: main prints the usage.
        assert_eq!(args("--help").unwrap_err(), "");
    }

    /// wrk 4.1.0's output, as proxy-bench runs it (`--latency`).
    const WRK: &str = "\
Running 10s test @ http://127.0.0.1:18183/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   655.41us  683.74us  18.57ms   97.06%
    Req/Sec    54.35k     4.78k   60.19k    86.00%
  Latency Distribution
     50%  548.00us
     75%  608.00us
     90%  718.00us
     99%    3.80ms
  540421 requests in 10.01s, 64.42MB read
Requests/sec:  54013.04
Transfer/sec:      6.44MB
";

    #[test]
    fn wrk_output_is_read() {
        let w = parse_wrk(WRK);
        assert_eq!(w.requests, 540_421);
        assert!((w.rps - 54_013.04).abs() < 1e-6);
        assert!((w.p50 - 0.548).abs() < 1e-9);
        assert!((w.p99 - 3.8).abs() < 1e-9);
        assert!(w.errors.is_empty());

        let failing = WRK.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\n  Non-2xx or 3xx responses: 12\nRequests/sec:",
        );
        assert_eq!(
            parse_wrk(&failing).errors,
            "Socket errors: connect 0, read 3, write 0, timeout 0; Non-2xx or 3xx responses: 12"
        );
    }

    #[test]
    fn wrk_latencies_are_read_in_milliseconds() {
        assert!((wrk_ms("548.00us") - 0.548).abs() < 1e-9);
        assert!((wrk_ms("3.80ms") - 3.8).abs() < 1e-9);
        assert!((wrk_ms("1.20s") - 1200.0).abs() < 1e-9);
        assert!(wrk_ms("12").is_nan());
        assert!(wrk_ms("fast").is_nan());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&ms, 0.50), 50.0);
        assert_eq!(percentile_ms(&ms, 0.99), 99.0);
        assert_eq!(percentile_ms(&ms, 0.999), 100.0);
        assert_eq!(percentile_ms(&ms, 0.0), 1.0);
        assert_eq!(percentile_ms(&[2_500_000], 0.5), 2.5);
        assert!(percentile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn medians_skip_what_was_not_measured() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![f64::NAN, 5.0, 1.0, f64::INFINITY]), 3.0);
        assert!(median(vec![f64::NAN]).is_nan());
        assert_eq!(opt(f64::NAN, 2), "–");
        assert_eq!(opt(0.1234, 3), "0.123");
        assert_eq!(mb(12_902.4), "12.6");
        assert_eq!(mb(0.0), "–");
    }

    #[test]
    fn proc_files_are_read() {
        // A command name with spaces and a parenthesis of its own.
        let stat = "4242 (mesh (proxy) x) S 17 4242 17 0 -1 4194560 900 0 0 0 \
                    1234 567 89 10 20 0 2 0 100 1000 200 0";
        assert_eq!(parse_stat(stat), Some((17, 1234, 567, 89, 10)));
        assert_eq!(parse_stat("4242 (cut short) S 17"), None);
        assert_eq!(parse_stat("no parenthesis"), None);

        let status = "Name:\tmesh-proxy\nVmHWM:\t   12904 kB\nVmRSS:\t   12602 kB\n\
                      RssAnon:\t    3072 kB\nRssFile:\t    9530 kB\n";
        assert_eq!(parse_status(status), (12_602, 12_904, 3_072));
        assert_eq!(parse_status("Name:\tkthreadd\n"), (0, 0, 0));

        let cpu = "cpu  100 5 300 4000 50 0 7 11 0 0\ncpu0 50 2 150 2000 25 0 3 5 0 0\n";
        // user + nice, steal.
        assert_eq!(parse_machine_ticks(cpu), (105, 11));
    }

    #[test]
    fn the_running_process_reads_itself() {
        let (ppid, ..) = proc_stat(std::process::id()).unwrap();
        assert!(ppid > 0);
        let (rss, hwm, anon) = rss_kb(&[std::process::id()]);
        assert!(rss > 0 && hwm >= rss && anon > 0 && anon <= rss);
    }
}
