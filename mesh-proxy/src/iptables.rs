//! `mesh-proxy iptables`: the counterpart of Istio's `istio-iptables` init
//! container. It installs, in the current network namespace, NAT rules that
//! send the pod's outbound TCP to the outbound capture port and its inbound
//! TCP to the inbound capture port, and removes exactly those rules again.
//!
//! Everything lives in four chains of our own (`MESH_INBOUND`,
//! `MESH_IN_REDIRECT`, `MESH_OUTPUT`, `MESH_REDIRECT`) plus one jump each from
//! `PREROUTING` and `OUTPUT`, so cleanup never touches a rule it did not add.
//! The rules go in with one `iptables-restore --noflush` (all or nothing);
//! installing first removes a previous install, so running twice is harmless.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use mesh_core::BoxError;

/// Istio's outbound capture port.
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
/// Istio's inbound capture port.
pub const INBOUND_CAPTURE_PORT: u16 = 15006;
/// Istio's proxy user and group.
pub const PROXY_UID: u32 = 1337;

const INBOUND: &str = "MESH_INBOUND";
const IN_REDIRECT: &str = "MESH_IN_REDIRECT";
const OUTPUT: &str = "MESH_OUTPUT";
const REDIRECT: &str = "MESH_REDIRECT";
/// The jumps from the built-in chains into ours.
const JUMPS: [(&str, &str); 2] = [("PREROUTING", INBOUND), ("OUTPUT", OUTPUT)];

/// What to capture and what to leave alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureRules {
    /// Where outbound TCP is redirected (Istio: 15001).
    pub outbound_port: u16,
    /// Where inbound TCP is redirected (Istio: 15006).
    pub inbound_port: u16,
    /// The proxy's user: its own connections are never captured.
    pub proxy_uids: Vec<u32>,
    /// The proxy's group: its own connections are never captured.
    pub proxy_gids: Vec<u32>,
    /// Inbound destination ports left alone (the admin port is always added).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports left alone.
    pub exclude_outbound_ports: Vec<u16>,
    /// The proxy's admin port: reachable from outside, never captured.
    pub admin_port: u16,
}

impl Default for CaptureRules {
    fn default() -> Self {
        CaptureRules {
            outbound_port: OUTBOUND_CAPTURE_PORT,
            inbound_port: INBOUND_CAPTURE_PORT,
            proxy_uids: vec![PROXY_UID],
            proxy_gids: vec![PROXY_UID],
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            admin_port: 15000,
        }
    }
}

/// The IP family a ruleset is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }
}

impl CaptureRules {
    /// The inbound ports never captured: the configured ones, the admin port
    /// and the capture ports themselves (a direct connection to them must not
    /// be redirected onto itself).
    fn inbound_exclusions(&self) -> Vec<u16> {
        let mut ports = self.exclude_inbound_ports.clone();
        ports.extend([self.admin_port, self.inbound_port, self.outbound_port]);
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The ruleset in `iptables-restore` form.
    pub fn ruleset(&self, family: Family) -> String {
        let mut out = String::from("*nat\n");
        for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        let _ = writeln!(
            out,
            "-A {IN_REDIRECT} -p tcp -j REDIRECT --to-ports {}",
            self.inbound_port
        );
        let _ = writeln!(
            out,
            "-A {REDIRECT} -p tcp -j REDIRECT --to-ports {}",
            self.outbound_port
        );
        // Inbound: every TCP connection arriving from outside, except the
        // excluded ports.
        for port in self.inbound_exclusions() {
            let _ = writeln!(out, "-A {INBOUND} -p tcp --dport {port} -j RETURN");
        }
        let _ = writeln!(out, "-A {INBOUND} -p tcp -j {IN_REDIRECT}");
        // Outbound: the proxy's own connections first (no loop), then
        // loopback, then the excluded ports; the rest is captured.
        for uid in &self.proxy_uids {
            let _ = writeln!(out, "-A {OUTPUT} -m owner --uid-owner {uid} -j RETURN");
        }
        for gid in &self.proxy_gids {
            let _ = writeln!(out, "-A {OUTPUT} -m owner --gid-owner {gid} -j RETURN");
        }
        let _ = writeln!(out, "-A {OUTPUT} -o lo -j RETURN");
        let _ = writeln!(out, "-A {OUTPUT} -d {} -j RETURN", family.loopback());
        for port in &self.exclude_outbound_ports {
            let _ = writeln!(out, "-A {OUTPUT} -p tcp --dport {port} -j RETURN");
        }
        let _ = writeln!(out, "-A {OUTPUT} -p tcp -j {REDIRECT}");
        for (from, to) in JUMPS {
            let _ = writeln!(out, "-A {from} -p tcp -j {to}");
        }
        out.push_str("COMMIT\n");
        out
    }

    /// What [`CaptureRules::install`] would run, as shell commands.
    pub fn dry_run(&self, families: &[Family]) -> String {
        let mut out = String::new();
        for &family in families {
            let _ = writeln!(
                out,
                "# {} (after removing a previous install)\n{}-restore --noflush <<'EOF'\n{}EOF",
                family.tool(),
                family.tool(),
                self.ruleset(family)
            );
        }
        out
    }

    /// Installs the rules for each family, replacing a previous install.
    pub fn install(&self, families: &[Family]) -> Result<(), BoxError> {
        for &family in families {
            cleanup(family)?;
            restore(family, &self.ruleset(family))?;
        }
        Ok(())
    }
}

/// What [`cleanup`] would run, as shell commands (each may fail harmlessly
/// when there is nothing to remove).
pub fn cleanup_script(family: Family) -> String {
    let tool = family.tool();
    let mut out = String::new();
    for (from, to) in JUMPS {
        let _ = writeln!(out, "{tool} -t nat -D {from} -p tcp -j {to}");
    }
    for op in ["-F", "-X"] {
        for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
            let _ = writeln!(out, "{tool} -t nat {op} {chain}");
        }
    }
    out
}

/// Removes what [`CaptureRules::install`] added (and nothing else); a no-op
/// when nothing is installed.
pub fn cleanup(family: Family) -> Result<(), BoxError> {
    for (from, to) in JUMPS {
        // A jump added twice by hand is removed twice: loop until it is gone.
        // Bounded, in case `-D` keeps "succeeding" for a reason of its own.
        for _ in 0..64 {
            if !iptables(family, &["-t", "nat", "-D", from, "-p", "tcp", "-j", to])?.0 {
                break;
            }
        }
    }
    for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
        if iptables(family, &["-t", "nat", "-n", "-L", chain])?.0 {
            let (ok, err) = iptables(family, &["-t", "nat", "-F", chain])?;
            if !ok {
                return Err(format!("{} -t nat -F {chain}: {err}", family.tool()).into());
            }
        }
    }
    for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
        if iptables(family, &["-t", "nat", "-n", "-L", chain])?.0 {
            let (ok, err) = iptables(family, &["-t", "nat", "-X", chain])?;
            if !ok {
                return Err(format!("{} -t nat -X {chain}: {err}", family.tool()).into());
            }
        }
    }
    Ok(())
}

/// Runs `iptables ARGS` (waiting for the xtables lock); whether it succeeded,
/// and its stderr. Only a missing tool is an error.
fn iptables(family: Family, args: &[&str]) -> Result<(bool, String), BoxError> {
    let out = Command::new(family.tool())
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing_tool(family.tool(), &e))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    ))
}

fn restore(family: Family, rules: &str) -> Result<(), BoxError> {
    let tool = format!("{}-restore", family.tool());
    let mut child = Command::new(&tool)
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(&tool, &e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into())
    }
}

fn missing_tool(tool: &str, e: &std::io::Error) -> BoxError {
    format!("cannot run {tool}: {e} (Debian: apt-get install iptables)").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_excludes_the_proxy_loopback_and_the_listed_ports() {
        let rules = CaptureRules {
            exclude_inbound_ports: vec![22],
            exclude_outbound_ports: vec![5432],
            ..CaptureRules::default()
        }
        .ruleset(Family::V4);
        let lines: Vec<&str> = rules.lines().collect();
        assert_eq!(lines.first(), Some(&"*nat"));
        assert_eq!(lines.last(), Some(&"COMMIT"));
        for expected in [
            "-A MESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
            "-A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
            "-A MESH_INBOUND -p tcp --dport 22 -j RETURN",
            "-A MESH_INBOUND -p tcp --dport 15000 -j RETURN",
            "-A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-A MESH_OUTPUT -m owner --gid-owner 1337 -j RETURN",
            "-A MESH_OUTPUT -o lo -j RETURN",
            "-A MESH_OUTPUT -p tcp --dport 5432 -j RETURN",
            "-A PREROUTING -p tcp -j MESH_INBOUND",
            "-A OUTPUT -p tcp -j MESH_OUTPUT",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing:\n{rules}");
        }
        // Exclusions come before the catch-all jump, or they would never match.
        let pos = |l: &str| lines.iter().position(|x| *x == l);
        assert!(
            pos("-A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN")
                < pos("-A MESH_OUTPUT -p tcp -j MESH_REDIRECT")
        );
        assert!(
            pos("-A MESH_INBOUND -p tcp --dport 22 -j RETURN")
                < pos("-A MESH_INBOUND -p tcp -j MESH_IN_REDIRECT")
        );
    }

    #[test]
    fn ipv6_rules_name_the_v6_loopback() {
        let rules = CaptureRules::default().ruleset(Family::V6);
        assert!(rules.contains("-A MESH_OUTPUT -d ::1/128 -j RETURN"));
        assert!(!rules.contains("127.0.0.1"));
    }

    #[test]
    fn the_cleanup_script_touches_only_our_chains_and_jumps() {
        let script = cleanup_script(Family::V4);
        for line in script.lines() {
            assert!(line.contains("MESH_"), "{line}");
        }
        assert!(script.contains("iptables -t nat -D OUTPUT -p tcp -j MESH_OUTPUT"));
    }

    #[test]
    fn dry_run_prints_a_runnable_script() {
        let script = CaptureRules::default().dry_run(&[Family::V4]);
        assert!(script.contains("iptables-restore --noflush <<'EOF'\n*nat\n"));
        assert!(script.trim_end().ends_with("COMMIT\nEOF"));
    }
}
