//! Pods on one machine: network namespaces joined by veth pairs to a bridge
//! that lives in a namespace of its own, so nothing of the pods' network
//! touches the machine's own namespace. Each pod has an address in
//! 10.99.0.0/24 and its own `/etc/netns/<pod>/hosts` (seen by programs run
//! with `ip netns exec`). Everything made is removed when the [`Mesh`] is
//! dropped, also when a test fails midway.
//!
//! Programs run inside a pod either as threads that entered its namespace
//! (sockets made there stay there) or as child processes spawned from such a
//! thread (children inherit the namespace).
//!
//! Needs root and `ip` (iproute2); used by `tests/pods.rs` and by
//! `cargo run -p examples --example pods`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod workloads;

use std::fmt::Write as _;
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

/// Whether this process can make namespaces (is root), and `ip` is there.
pub fn unavailable() -> Option<String> {
    // The effective uid, from /proc/self/status (no libc call needed).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("");
    if euid != "0" {
        return Some(format!("not root (euid {euid})"));
    }
    for tool in ["ip", "iptables", "iptables-save"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// A pod: a network namespace with one address.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The pod's short name.
    pub name: String,
    /// The namespace's name (`ip netns list`).
    pub netns: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address (fd99::<host>).
    pub ip6: std::net::Ipv6Addr,
}

/// The pods, their bridge, and what runs in them.
pub struct Mesh {
    prefix: String,
    bridge: String,
    pods: Vec<Pod>,
    children: Mutex<Vec<Child>>,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Mesh {
    /// An empty mesh: the bridge namespace and its bridge. Namespaces left by
    /// an earlier run that died are removed first.
    pub fn new() -> io::Result<Mesh> {
        remove_stale();
        static MESHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MESHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("mesh{}x{n}", std::process::id());
        let bridge = format!("{prefix}-br");
        let mesh = Mesh {
            prefix,
            bridge: bridge.clone(),
            pods: Vec::new(),
            children: Mutex::default(),
            stop: tokio::sync::watch::channel(false).0,
            threads: Mutex::default(),
        };
        ip(&["netns", "add", &bridge])?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        ip(&["-n", &bridge, "link", "set", "lo", "up"])?;
        Ok(mesh)
    }

    /// The prefix of every namespace this mesh makes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Adds a pod at 10.99.0.`host` whose `/etc/hosts` maps `hosts`' names.
    pub fn add_pod(&mut self, name: &str, host: u8, hosts: &[(&str, Ipv4Addr)]) -> io::Result<Pod> {
        let netns = format!("{}-{name}", self.prefix);
        let addr = Ipv4Addr::new(10, 99, 0, host);
        ip(&["netns", "add", &netns])?;
        let pod = Pod {
            name: name.to_owned(),
            netns: netns.clone(),
            ip: addr,
            // The same digits as the IPv4 host part, read as hex: fd99::11.
            ip6: format!("fd99::{host}").parse().expect("an IPv6 address"),
        };
        self.pods.push(pod.clone());
        let peer = format!("v{host}");
        // Both ends are made directly in their namespaces.
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &netns,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &self.bridge,
        ])?;
        ip(&[
            "-n",
            &self.bridge,
            "link",
            "set",
            &peer,
            "master",
            "br0",
            "up",
        ])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        // And fd99::<host>/64; `nodad` makes it usable at once.
        let v6 = format!("fd99::{host}/64");
        ip(&["-n", &netns, "addr", "add", &v6, "dev", "eth0", "nodad"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let etc = etc_dir(&netns);
        std::fs::create_dir_all(&etc)?;
        let mut file = format!("127.0.0.1 localhost\n{addr} {name}\n");
        for (host, ip) in hosts {
            let _ = writeln!(file, "{ip} {host}");
        }
        std::fs::write(etc.join("hosts"), file)?;
        Ok(pod)
    }

    /// Runs `f` on a thread inside `pod`'s network namespace and returns what
    /// it returns.
    pub fn run_in<T, F>(&self, pod: &Pod, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let netns = pod.netns.clone();
        std::thread::spawn(move || {
            enter(&netns);
            f()
        })
        .join()
        .expect("pod thread panicked")
    }

    /// Runs `fut` to completion on a runtime inside `pod`'s namespace.
    pub fn block_in<T, F>(&self, pod: &Pod, fut: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.run_in(pod, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(fut)
        })
    }

    /// Starts `make()`'s future on a runtime of its own inside `pod`'s
    /// namespace, until the mesh is dropped (servers). `make` runs inside the
    /// namespace, so what it binds is the pod's.
    pub fn serve_in<M, F>(&self, pod: &Pod, make: M)
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        let netns = pod.netns.clone();
        let mut stop = self.stop.subscribe();
        let thread = std::thread::spawn(move || {
            enter(&netns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::select! {
                    () = make() => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        });
        self.threads.lock().unwrap().push(thread);
    }

    /// Spawns `cmd` inside `pod`'s namespace; it is killed when the mesh is
    /// dropped.
    pub fn spawn(&self, pod: &Pod, mut cmd: Command) -> io::Result<()> {
        let child = self.run_in(pod, move || cmd.spawn())?;
        self.children.lock().unwrap().push(child);
        Ok(())
    }

    /// Runs a program with `ip netns exec` (which also puts the pod's
    /// `/etc/netns/<pod>/hosts` in place) and waits for it.
    pub fn exec(&self, pod: &Pod, args: &[&str]) -> io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &pod.netns])
            .args(args)
            .stdin(Stdio::null())
            .output()
    }
}

/// Puts the calling thread in a network namespace.
fn enter(netns: &str) {
    let file = File::open(format!("/var/run/netns/{netns}")).expect("no such namespace");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn etc_dir(netns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(netns)
}

/// Removes the namespaces (and `/etc/netns` dirs) of meshes whose process is
/// gone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("mesh") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
            let _ = std::fs::remove_dir_all(etc_dir(&name));
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // Threads inside a namespace keep it alive: stop them first.
        let _ = self.stop.send(true);
        for t in self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
        {
            let _ = t.join();
        }
        for mut child in self
            .children
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace removes its links (the veth pairs with them)
        // and its iptables rules.
        for pod in &self.pods {
            let _ = ip(&["netns", "del", &pod.netns]);
            let _ = std::fs::remove_dir_all(etc_dir(&pod.netns));
        }
        let _ = ip(&["netns", "del", &self.bridge]);
    }
}
