//! DNS discovery against a real dnsmasq on 127.0.0.1: every test starts its
//! own server in the foreground on a free high port, answering from a hosts
//! file that the test rewrites (then `SIGHUP`) to change the answers.
//!
//! dnsmasq must be installed (`apt-get install -y dnsmasq`; `.ci/run` does
//! it): without it these tests fail, they do not skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use mesh_core::discover::EndpointSet;
use mesh_proxy::dns::{DnsError, DnsTarget, Resolver, watch};
use tokio::time::Instant;
use tower::discover::Change;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

/// A dnsmasq serving `cluster.local` from a hosts file, killed on drop.
struct Dnsmasq {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

fn dnsmasq_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("dnsmasq"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq is not installed: these tests need a real DNS server on loopback. \
                 Install it with `apt-get install -y dnsmasq` (.ci/run does this)."
            )
        })
}

/// A UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` as its hosts file and waits until it
    /// answers for `ready_name`.
    async fn start(hosts: &str, extra: &[&str], ready_name: &str) -> Dnsmasq {
        let bin = dnsmasq_binary();
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_udp_port();
            let dir = tempfile::tempdir().unwrap();
            // Run as root, dnsmasq drops to `nobody`, who must read the hosts
            // file again on SIGHUP.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let mut dns = Dnsmasq {
                child: None,
                dir,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            dns.write_hosts(hosts);
            let log = fs::File::create(dns.path("log")).unwrap();
            let child = Command::new(&bin)
                .arg("-k")
                .arg("--conf-file=/dev/null")
                .arg("--no-resolv")
                .arg("--no-hosts")
                .arg("--listen-address=127.0.0.1")
                .arg("--bind-interfaces")
                .arg(format!("--port={port}"))
                .arg(format!("--addn-hosts={}", dns.path("hosts").display()))
                .arg(format!("--pid-file={}", dns.path("pid").display()))
                .arg("--log-facility=-")
                .arg("--local-ttl=1")
                .arg("--local=/cluster.local/")
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            dns.child = Some(child);
            if dns.wait_ready(ready_name).await {
                return dns;
            }
            // Most likely another process took the port in between: retry.
            dns.stop();
            last_log = fs::read_to_string(dns.path("log")).unwrap_or_default();
        }
        panic!("dnsmasq did not come up; its last log:\n{last_log}");
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn write_hosts(&self, hosts: &str) {
        let path = self.path("hosts");
        fs::write(&path, hosts).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Rewrites the hosts file and makes dnsmasq re-read it.
    fn change_hosts(&self, hosts: &str) {
        self.write_hosts(hosts);
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success(), "kill -HUP {pid}");
    }

    async fn wait_ready(&mut self, name: &str) -> bool {
        let resolver = self.resolver();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false; // exited
            }
            if resolver.lookup(name).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A resolver asking this server only, failing fast.
    fn resolver(&self) -> Resolver {
        Resolver::with_server(self.addr).with_timeout(Duration::from_millis(300), 1)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

fn addrs(set: &EndpointSet) -> BTreeSet<String> {
    set.snapshot()
        .iter()
        .map(|e| e.addr().to_string())
        .collect()
}

fn set_of(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|s| (*s).to_string()).collect()
}

/// Polls `check` every 20 ms until it holds or `within` has passed.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reviews_hosts(ips: &[&str]) -> String {
    ips.iter().map(|ip| format!("{ip} {REVIEWS}\n")).collect()
}

#[tokio::test]
async fn every_address_of_a_name_becomes_an_endpoint() {
    let hosts = format!(
        "{}127.0.0.5 dual.cluster.local\nfd00::5 dual.cluster.local\n",
        reviews_hosts(&["127.0.0.2", "127.0.0.3"])
    );
    let cname = format!("--cname=alias.cluster.local,{REVIEWS}");
    let dns = Dnsmasq::start(&hosts, &[&cname], REVIEWS).await;

    // The resolver itself: both addresses, dnsmasq's TTL, NXDOMAIN, CNAMEs.
    let resolver = dns.resolver();
    let answer = resolver.lookup(REVIEWS).await.unwrap();
    let want: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    assert_eq!(answer.addrs, want);
    assert_eq!(answer.ttl, Some(Duration::from_secs(1)), "--local-ttl=1");
    assert_eq!(
        resolver.lookup("alias.cluster.local.").await.unwrap().addrs,
        want
    );
    let missing = resolver.lookup("nope.cluster.local").await;
    assert!(matches!(missing, Err(DnsError::NotFound)), "{missing:?}");

    // The watcher: one set over three names, each with its port and metadata.
    let mut reviews = DnsTarget::new(REVIEWS, 9080);
    reviews.labels.insert("version".into(), "v1".into());
    reviews.weight = 2;
    let targets = vec![
        reviews,
        DnsTarget::new("alias.cluster.local", 9081),
        DnsTarget::new("dual.cluster.local", 9082),
    ];
    let set = EndpointSet::new();
    let handle = watch(targets, set.clone(), dns.resolver(), Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(10), handle.first_round())
        .await
        .expect("the first lookups finish");
    assert_eq!(handle.stats().failed, 0, "{:?}", handle.stats());
    assert_eq!(
        addrs(&set),
        set_of(&[
            "127.0.0.2:9080",
            "127.0.0.3:9080",
            "127.0.0.2:9081",
            "127.0.0.3:9081",
            "127.0.0.5:9082",
            "[fd00::5]:9082",
        ])
    );
    for ep in set.snapshot().iter().filter(|e| e.addr().port() == 9080) {
        assert_eq!(ep.labels()["version"], "v1");
        assert_eq!(ep.weight().get(), 2);
    }
}

#[tokio::test]
async fn a_change_on_the_server_reaches_the_set_within_the_ttl() {
    let dns = Dnsmasq::start(&reviews_hosts(&["127.0.0.2", "127.0.0.3"]), &[], REVIEWS).await;
    let set = EndpointSet::new();
    // A refresh far longer than the test: only the 1 s TTL can bring the change.
    let refresh = Duration::from_secs(60);
    let handle = watch(
        vec![DnsTarget::new(REVIEWS, 9080)],
        set.clone(),
        dns.resolver(),
        refresh,
    );
    tokio::time::timeout(Duration::from_secs(10), handle.first_round())
        .await
        .expect("the first lookup finishes");
    assert_eq!(addrs(&set), set_of(&["127.0.0.2:9080", "127.0.0.3:9080"]));
    // What a balancer sees: the current endpoints first.
    let mut changes = set.discover();
    for _ in 0..2 {
        let change = changes.next().await.unwrap().unwrap();
        assert!(matches!(change, Change::Insert(..)), "{change:?}");
    }

    let changed_at = Instant::now();
    dns.change_hosts(&reviews_hosts(&["127.0.0.3", "127.0.0.4"]));
    let moved = eventually(Duration::from_secs(10), || {
        addrs(&set) == set_of(&["127.0.0.3:9080", "127.0.0.4:9080"])
    })
    .await;
    assert!(moved, "the set is still {:?}", addrs(&set));
    assert!(changed_at.elapsed() < refresh);

    // The balancer gets the difference: 127.0.0.3 stays untouched.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(match change {
            Change::Insert(addr, _) => format!("+{addr}"),
            Change::Remove(addr) => format!("-{addr}"),
        });
    }
    seen.sort();
    assert_eq!(seen, ["+127.0.0.4:9080", "-127.0.0.2:9080"]);
}

#[tokio::test]
async fn a_failed_lookup_keeps_the_last_set() {
    let mut dns = Dnsmasq::start(&reviews_hosts(&["127.0.0.2", "127.0.0.3"]), &[], REVIEWS).await;
    let set = EndpointSet::new();
    let handle = watch(
        vec![DnsTarget::new(REVIEWS, 9080)],
        set.clone(),
        dns.resolver(),
        Duration::from_secs(1),
    );
    tokio::time::timeout(Duration::from_secs(10), handle.first_round())
        .await
        .expect("the first lookup finishes");
    let before = addrs(&set);
    assert_eq!(before, set_of(&["127.0.0.2:9080", "127.0.0.3:9080"]));

    dns.stop();
    let failed_twice = eventually(Duration::from_secs(15), || handle.stats().failed >= 2).await;
    assert!(
        failed_twice,
        "lookups kept succeeding: {:?}",
        handle.stats()
    );
    assert_eq!(
        addrs(&set),
        before,
        "a failed lookup must not empty the set"
    );
}

mod support;

/// The proxy binary resolving a `resolution: DNS` ServiceEntry through
/// `--dns`, against the real dnsmasq: traffic follows the DNS answer and no
/// request fails while it moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_follows_dns_changes_without_failing_requests() {
    use support::{Backend, Behavior, Client, ProxyProc, sidecar};
    let b2 = Backend::start_at("127.0.0.2:0".parse().unwrap(), "b2", Behavior::Ok).await;
    let port = b2.addr.port();
    let b3 = Backend::start_at(SocketAddr::from(([127, 0, 0, 3], port)), "b3", Behavior::Ok).await;
    let dns = Dnsmasq::start(&reviews_hosts(&["127.0.0.2"]), &[], REVIEWS).await;
    let yaml = format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  hosts: [{REVIEWS}]\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: DNS\n  endpoints:\n  - address: {REVIEWS}\n    ports: {{http: {port}}}\n",
        sidecar()
    );
    let dns_arg = dns.addr.to_string();
    let proxy = ProxyProc::start_with(&yaml, &["--dns", &dns_arg]);
    let client = Client::new();
    // The first answer arrives shortly after start.
    let mut first = None;
    for _ in 0..100 {
        let (status, _, body) = client.get(proxy.outbound(), "reviews", "/", &[]).await;
        if status == 200 {
            first = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.as_deref(), Some("b2"));

    dns.change_hosts(&reviews_hosts(&["127.0.0.3"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut moved = false;
    let mut sent = 0;
    while Instant::now() < deadline {
        let (status, _, body) = client.get(proxy.outbound(), "reviews", "/", &[]).await;
        sent += 1;
        assert_eq!(
            status, 200,
            "request {sent} failed while DNS changed: {body}"
        );
        if body == "b3" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "traffic did not move to the new DNS answer");
    for _ in 0..10 {
        assert_eq!(
            client.get(proxy.outbound(), "reviews", "/", &[]).await.2,
            "b3"
        );
    }
    assert!(b3.hits() >= 11);
}
