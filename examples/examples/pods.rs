//! Pods on one machine, each with a sidecar that captures its traffic: a
//! `client` pod runs `curl http://reviews:9080/`, knowing nothing of the
//! mesh; its sidecar finds the `reviews` service by its virtual IP, calls the
//! `reviews` pod over mTLS, whose sidecar hands the request to the app. Both
//! access logs show the request. Everything is removed at the end.
//!
//! Needs root, iproute2, iptables and curl (Debian: `apt-get install
//! iptables curl`), and the proxy binary built first:
//!
//! ```sh
//! cargo build -p mesh-proxy && cargo run -p examples --example pods
//! ```
//!
//! The namespaces live as long as the example runs (`--keep` waits for
//! Enter before tearing down, to look around with `ip netns exec`).

#[path = "../../mesh-proxy/tests/netns/mod.rs"]
mod netns;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use netns::Mesh;
use netns::workloads::{App, capture_sidecar, serve_app, start_sidecar};

const REVIEWS_VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 200);

fn config(reviews: Ipv4Addr) -> String {
    format!(
        r#"{head}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  addresses: [{REVIEWS_VIP}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {reviews}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec: {{host: reviews, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}
"#,
        head = capture_sidecar(false),
    )
}

/// The proxy binary: `$MESH_PROXY`, else next to this example's directory
/// (`target/debug/examples/pods` → `target/debug/mesh-proxy`).
fn proxy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MESH_PROXY") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("mesh-proxy");
    candidate.exists().then_some(candidate)
}

fn main() -> ExitCode {
    if let Some(why) = netns::unavailable() {
        eprintln!("pods: cannot run: {why}");
        return ExitCode::FAILURE;
    }
    let Some(proxy) = proxy_binary() else {
        eprintln!("pods: build the proxy first: cargo build -p mesh-proxy (or set MESH_PROXY)");
        return ExitCode::FAILURE;
    };
    let keep = std::env::args().any(|a| a == "--keep");
    let home = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pods: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ca = match mesh_tls::DevCa::new("cluster.local") {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("pods: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = {
        let mut mesh = match Mesh::new() {
            Ok(m) => m,
            Err(e) => {
                eprintln!("pods: {e}");
                return ExitCode::FAILURE;
            }
        };
        let hosts = [("reviews", REVIEWS_VIP)];
        let (Ok(client), Ok(reviews)) = (
            mesh.add_pod("client", 10, &hosts),
            mesh.add_pod("reviews", 11, &hosts),
        ) else {
            eprintln!("pods: cannot create the pods");
            return ExitCode::FAILURE;
        };
        println!(
            "pods: client {} and reviews {}; reviews' VIP {REVIEWS_VIP}",
            client.ip, reviews.ip
        );
        mesh.serve_in(&reviews, || {
            serve_app("hello from reviews", App::default(), 9080)
        });
        let yaml = config(reviews.ip);
        let client_sidecar =
            start_sidecar(&mesh, &client, &proxy, &home, &ca, "client", &yaml, &[]);
        let reviews_sidecar =
            start_sidecar(&mesh, &reviews, &proxy, &home, &ca, "reviews", &yaml, &[]);
        println!("pods: sidecars up, capture rules installed (mesh-proxy iptables)");
        let out = mesh.exec(
            &client,
            &[
                "curl",
                "-sS",
                "-i",
                "-H",
                "x-request-id: pods-demo",
                "http://reviews:9080/",
            ],
        );
        let answered = match out {
            Ok(out) => {
                println!("\n$ ip netns exec client curl -i http://reviews:9080/");
                let stdout = String::from_utf8_lossy(&out.stdout);
                print!("{stdout}");
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                out.status.success() && stdout.starts_with("HTTP/1.1 200")
            }
            Err(e) => {
                eprintln!("pods: curl: {e}");
                false
            }
        };
        let logged =
            answered && client_sidecar.logged("pods-demo") && reviews_sidecar.logged("pods-demo");
        for (name, sidecar) in [("client", &client_sidecar), ("reviews", &reviews_sidecar)] {
            println!("\n{name} sidecar's access log:");
            for line in sidecar.access_log() {
                println!("  {line}");
            }
        }
        if keep {
            println!("\npods: namespaces kept until Enter (ip netns list)");
            let _ = std::io::stdin().read_line(&mut String::new());
        }
        if logged {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    let _ = std::fs::remove_dir_all(&home);
    println!("\npods: namespaces, links and rules removed");
    code
}

/// A private directory for the sidecars' files.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("mesh-pods-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
