//! DNS discovery for `ServiceEntry`s with `resolution: DNS`.
//!
//! Each [`DnsTarget`] is a name (an endpoint's `address`, or one of the
//! ServiceEntry's `hosts` when it lists no endpoints) plus the port, labels,
//! weight and locality its endpoints get. [`watch`] resolves every target at
//! once and then again and again, and after each answer swaps the union of
//! all targets' addresses into an [`EndpointSet`] with
//! [`EndpointSet::replace`]: the balancer over that set picks the change up
//! without dropping requests.
//!
//! **Schedule.** A target is re-resolved after `min(TTL, refresh)` (refresh
//! is [`DEFAULT_REFRESH`], 5 s, unless given), never sooner than
//! [`MIN_INTERVAL`] (1 s) after its last lookup, so a TTL of 0 does not make
//! us hammer the server. Answers without a TTL (the hosts file, IP literals)
//! are re-read every `refresh`.
//!
//! **Failures keep the last good answer.** A timeout, a server error,
//! NXDOMAIN or an answer with no address never empties a target: its last
//! good endpoints stay in the set, a `tracing::warn!` says why, and the name
//! is tried again after `refresh`. This is what Envoy's `STRICT_DNS` clusters
//! do: a flapping resolver must not black-hole a working service.
//!
//! **The resolver.** [`Resolver::system`] reads `/etc/resolv.conf` (up to
//! three `nameserver`s, `options timeout:N attempts:N`) and consults
//! `/etc/hosts` first, as glibc's `files dns` does; [`Resolver::with_server`]
//! asks one server (`mesh-proxy run --dns ADDR:PORT`) and nothing else.
//! Names are taken as fully qualified: `search` domains are not applied.
//!
//! **Why a hand-written client and not hickory-resolver.** What discovery
//! needs is small: A and AAAA queries over UDP to a known server, answers
//! parsed with CNAME chains and TTLs. That is some 650 lines here, watcher included (building
//! a query, a bounds-checked parser that follows compression pointers with a
//! jump limit, random query ids and random source ports, answers matched by
//! id and question, timeout and retry over the servers). hickory-resolver
//! 0.26 would bring its own cache (which would hide the TTL schedule we
//! want to control), a DNSSEC/DoT/DoH-shaped API that churns between
//! releases, and several dozen crates to every build of the proxy. No TCP
//! fallback: queries carry an EDNS0 OPT record asking for 1232-byte answers
//! (room for ~70 A records), and a truncated answer is used for the records
//! it holds. The parser is fuzzed with random and mutated packets
//! (proptest) and never panics.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mesh_core::discover::EndpointSet;
use mesh_core::{Endpoint, Labels, Locality};
use tokio::net::UdpSocket;
use tokio::sync::watch as channel;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often a name is re-resolved when its answer has no shorter TTL.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// The shortest time between two lookups of one name, whatever the TTL.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The DNS port.
const DNS_PORT: u16 = 53;
/// How many `nameserver` lines glibc reads (`MAXNS`).
const MAX_NAMESERVERS: usize = 3;
/// How long one query waits for its answer unless resolv.conf says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many rounds over the servers a query makes unless resolv.conf says otherwise.
const DEFAULT_ATTEMPTS: u32 = 2;
/// The UDP payload size we advertise in EDNS0 (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// The longest CNAME chain we follow inside one answer.
const MAX_CNAME_CHAIN: usize = 16;
/// The most compression pointers followed while reading one name.
const MAX_POINTER_JUMPS: usize = 64;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u8 = 3;

// ===== targets and the watcher =====

/// One name to resolve and what the endpoints it yields look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTarget {
    /// The name to resolve (`reviews.default.svc.cluster.local`); an IP
    /// literal is taken as is.
    pub name: String,
    /// The port every resolved address gets.
    pub port: u16,
    /// Labels of every endpoint from this name (for subsets).
    pub labels: Labels,
    /// Balancing weight of every endpoint from this name (0 means 1).
    pub weight: u32,
    /// Locality of every endpoint from this name.
    pub locality: Locality,
}

impl DnsTarget {
    /// A target with no labels, weight 1 and no locality.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        DnsTarget {
            name: name.into(),
            port,
            labels: BTreeMap::new(),
            weight: 1,
            locality: Locality::default(),
        }
    }

    fn endpoints(&self, addrs: &[IpAddr]) -> Vec<Endpoint> {
        addrs
            .iter()
            .map(|ip| {
                Endpoint::new(SocketAddr::new(*ip, self.port))
                    .with_labels(self.labels.clone())
                    .with_weight(self.weight)
                    .with_locality(self.locality.clone())
            })
            .collect()
    }
}

/// Counters of a [`watch`], for tests and the admin server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Lookups that gave addresses.
    pub resolved: u64,
    /// Lookups that failed (the last good endpoints were kept).
    pub failed: u64,
    /// Targets that have not finished their first lookup yet.
    pub pending: usize,
}

/// The running watch started by [`watch`]; dropping it stops every lookup.
#[derive(Debug)]
pub struct WatchHandle {
    // Dropping a JoinSet aborts its tasks.
    _tasks: JoinSet<()>,
    stats: channel::Receiver<WatchStats>,
}

impl WatchHandle {
    /// The counters so far.
    pub fn stats(&self) -> WatchStats {
        *self.stats.borrow()
    }

    /// Waits until every target has been looked up once (successfully or
    /// not): after this, the set holds whatever the first answers gave.
    pub async fn first_round(&self) {
        let mut rx = self.stats.clone();
        // An error means the tasks are gone, so there is nothing to wait for.
        let _ = rx.wait_for(|s| s.pending == 0).await;
    }
}

/// Resolves `targets` now and then every `min(TTL, refresh)` (at least
/// [`MIN_INTERVAL`] apart), replacing the contents of `set` with the union of
/// their latest good answers whenever one changes. A target whose lookup
/// fails keeps its previous endpoints. Until a target's first lookup
/// succeeds it contributes nothing; until any target succeeds, `set` is left
/// as it was.
///
/// # Panics
///
/// When called outside a Tokio runtime.
pub fn watch(
    targets: Vec<DnsTarget>,
    set: EndpointSet,
    resolver: Resolver,
    refresh: Duration,
) -> WatchHandle {
    watch_with(targets, set, Arc::new(resolver), refresh)
}

/// Something that turns a name into addresses: the [`Resolver`], or a fake in
/// tests.
trait Lookup: Send + Sync + 'static {
    fn lookup(&self, name: &str) -> impl Future<Output = Result<Answer, DnsError>> + Send;
}

impl Lookup for Resolver {
    fn lookup(&self, name: &str) -> impl Future<Output = Result<Answer, DnsError>> + Send {
        Resolver::lookup(self, name)
    }
}

/// The delay before a name is looked up again after a good answer.
fn next_interval(ttl: Option<Duration>, refresh: Duration) -> Duration {
    ttl.map_or(refresh, |ttl| ttl.min(refresh))
        .max(MIN_INTERVAL)
}

fn watch_with<L: Lookup>(
    targets: Vec<DnsTarget>,
    set: EndpointSet,
    lookup: Arc<L>,
    refresh: Duration,
) -> WatchHandle {
    let (stats_tx, stats) = channel::channel(WatchStats {
        pending: targets.len(),
        ..WatchStats::default()
    });
    let stats_tx = Arc::new(stats_tx);
    // The latest good endpoints of each target, by index.
    let latest: Arc<Mutex<Vec<Option<Vec<Endpoint>>>>> =
        Arc::new(Mutex::new(vec![None; targets.len()]));
    let mut tasks = JoinSet::new();
    for (index, target) in targets.into_iter().enumerate() {
        let lookup = lookup.clone();
        let latest = latest.clone();
        let set = set.clone();
        let stats_tx = stats_tx.clone();
        tasks.spawn(async move {
            let mut first = true;
            loop {
                let wait = match lookup.lookup(&target.name).await {
                    Ok(answer) => {
                        let endpoints = target.endpoints(&answer.addrs);
                        let mut latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(slot) = latest.get_mut(index)
                            && slot.as_ref() != Some(&endpoints)
                        {
                            tracing::info!(
                                name = %target.name,
                                addresses = ?answer.addrs,
                                ttl = ?answer.ttl,
                                "DNS endpoints changed"
                            );
                            *slot = Some(endpoints);
                            set.replace(latest.iter().flatten().flatten().cloned());
                        }
                        drop(latest);
                        stats_tx.send_modify(|s| s.resolved += 1);
                        next_interval(answer.ttl, refresh)
                    }
                    Err(error) => {
                        let kept = latest
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(index)
                            .and_then(|slot| slot.as_ref().map(Vec::len))
                            .unwrap_or(0);
                        tracing::warn!(
                            name = %target.name,
                            %error,
                            kept,
                            "DNS lookup failed; keeping the last good endpoints"
                        );
                        stats_tx.send_modify(|s| s.failed += 1);
                        refresh.max(MIN_INTERVAL)
                    }
                };
                if first {
                    first = false;
                    stats_tx.send_modify(|s| s.pending = s.pending.saturating_sub(1));
                }
                tokio::time::sleep(wait).await;
            }
        });
    }
    WatchHandle {
        _tasks: tasks,
        stats,
    }
}

// ===== the resolver =====

/// The addresses a name resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// IPv4 and IPv6 addresses, sorted, without duplicates; never empty.
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL along the answer (CNAMEs included), if it came from DNS.
    pub ttl: Option<Duration>,
}

/// Why a lookup gave no addresses.
#[derive(Debug)]
#[non_exhaustive]
pub enum DnsError {
    /// The name cannot be put in a query (empty label, label over 63 bytes...).
    InvalidName(String),
    /// The server says the name does not exist (NXDOMAIN).
    NotFound,
    /// The name exists but has no A or AAAA record.
    NoAddresses,
    /// The server answered with this error code (2 SERVFAIL, 5 REFUSED...).
    Server(u8),
    /// No answer came in time from any server.
    Timeout,
    /// Sending or receiving failed.
    Io(io::Error),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::InvalidName(why) => write!(f, "invalid name: {why}"),
            DnsError::NotFound => f.write_str("no such name (NXDOMAIN)"),
            DnsError::NoAddresses => f.write_str("the name has no A or AAAA record"),
            DnsError::Server(rcode) => write!(f, "the server answered with rcode {rcode}"),
            DnsError::Timeout => f.write_str("no answer from the DNS server(s)"),
            DnsError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DnsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DnsError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for DnsError {
    fn from(e: io::Error) -> Self {
        DnsError::Io(e)
    }
}

/// A stub resolver: asks recursive servers for A and AAAA records over UDP.
///
/// Cheap to clone. It keeps no cache: every [`lookup`](Self::lookup) asks.
#[derive(Clone, Debug)]
pub struct Resolver {
    servers: Arc<[SocketAddr]>,
    hosts: Option<PathBuf>,
    timeout: Duration,
    attempts: u32,
}

impl Resolver {
    /// The system's resolver: the nameservers of `/etc/resolv.conf` (or
    /// 127.0.0.1:53 when it names none, as glibc does), after `/etc/hosts`.
    pub fn system() -> Resolver {
        let text = match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(text) => text,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(error = %e, "cannot read /etc/resolv.conf; using 127.0.0.1:53");
                }
                String::new()
            }
        };
        let mut resolver = Resolver::from_resolv_conf(&text);
        resolver.hosts = Some(PathBuf::from("/etc/hosts"));
        resolver
    }

    /// A resolver asking `server` only (no hosts file).
    pub fn with_server(server: SocketAddr) -> Resolver {
        Resolver {
            servers: Arc::from([server]),
            hosts: None,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        }
    }

    /// A resolver configured by the text of a `resolv.conf` (no hosts file).
    pub fn from_resolv_conf(text: &str) -> Resolver {
        let conf = ResolvConf::parse(text);
        let servers = if conf.servers.is_empty() {
            vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DNS_PORT)]
        } else {
            conf.servers
        };
        Resolver {
            servers: servers.into(),
            hosts: None,
            timeout: conf.timeout.unwrap_or(DEFAULT_TIMEOUT),
            attempts: conf.attempts.unwrap_or(DEFAULT_ATTEMPTS),
        }
    }

    /// Sets how long one query waits for its answer and how many rounds over
    /// the servers a lookup makes (at least one).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration, attempts: u32) -> Resolver {
        self.timeout = timeout;
        self.attempts = attempts.max(1);
        self
    }

    /// The servers asked, in order.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The A and AAAA addresses of `name` (asked at the same time), following
    /// CNAMEs. An IP literal is its own answer; with the system resolver, a
    /// name in the hosts file is answered from there.
    pub async fn lookup(&self, name: &str) -> Result<Answer, DnsError> {
        let bare = name.strip_suffix('.').unwrap_or(name);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Answer {
                addrs: vec![ip],
                ttl: None,
            });
        }
        if let Some(path) = &self.hosts {
            // A missing or unreadable hosts file is an empty one.
            if let Ok(text) = tokio::fs::read_to_string(path).await {
                let addrs = hosts_lookup(&text, bare);
                if !addrs.is_empty() {
                    return Ok(Answer { addrs, ttl: None });
                }
            }
        }
        let qname = encode_name(name)?;
        let (v4, v6) = tokio::join!(
            self.query(&qname, RecordType::A),
            self.query(&qname, RecordType::Aaaa)
        );
        let (v4, v6) = (v4?, v6?);
        let mut addrs: Vec<IpAddr> = v4.addrs.into_iter().chain(v6.addrs).collect();
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(DnsError::NoAddresses);
        }
        let ttl = match (v4.ttl, v6.ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Answer {
            addrs,
            ttl: ttl.map(|s| Duration::from_secs(u64::from(s))),
        })
    }

    /// One query type, over the servers in turn, `attempts` rounds.
    async fn query(&self, qname: &[u8], qtype: RecordType) -> Result<Reply, DnsError> {
        let mut last = DnsError::Timeout;
        for _ in 0..self.attempts {
            for server in self.servers.iter() {
                match query_server(*server, qname, qtype, self.timeout).await {
                    Ok(Parsed::Reply(reply)) => return Ok(reply),
                    // NXDOMAIN is an answer, not a failure to get one.
                    Ok(Parsed::NxDomain) => return Err(DnsError::NotFound),
                    Ok(Parsed::ServerError(rcode)) => last = DnsError::Server(rcode),
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }
}

/// Sends one query to `server` and waits for the answer to it, ignoring
/// datagrams that are not that answer.
async fn query_server(
    server: SocketAddr,
    qname: &[u8],
    qtype: RecordType,
    timeout: Duration,
) -> Result<Parsed, DnsError> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone but the server.
    socket.connect(server).await?;
    let id: u16 = rand::random();
    socket.send(&build_query(id, qname, qtype)).await?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| DnsError::Timeout)??;
        match parse_response(buf.get(..n).unwrap_or_default(), id, qname, qtype) {
            Ok(parsed) => return Ok(parsed),
            Err(why) => tracing::debug!(%server, why, "ignoring a DNS datagram"),
        }
    }
}

// ===== resolv.conf and hosts =====

/// What we read from a `resolv.conf`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ResolvConf {
    servers: Vec<SocketAddr>,
    timeout: Option<Duration>,
    attempts: Option<u32>,
}

impl ResolvConf {
    /// Reads `nameserver` lines (the first three, as glibc) and `options
    /// timeout:N attempts:N`; ignores everything else.
    fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    let Some(addr) = words.next() else { continue };
                    // Link-local with a zone (fe80::1%eth0) is not supported.
                    if let Ok(ip) = addr.parse::<IpAddr>()
                        && conf.servers.len() < MAX_NAMESERVERS
                    {
                        conf.servers.push(SocketAddr::new(ip, DNS_PORT));
                    }
                }
                Some("options") => {
                    for option in words {
                        let Some((key, n)) = option.split_once(':') else {
                            continue;
                        };
                        let Ok(n) = n.parse::<u32>() else { continue };
                        match key {
                            "timeout" => {
                                conf.timeout = Some(Duration::from_secs(u64::from(n.clamp(1, 30))));
                            }
                            "attempts" => conf.attempts = Some(n.clamp(1, 5)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }
}

/// The addresses a hosts file gives `name` (case-insensitive), sorted.
fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            let ip = words.next()?.parse::<IpAddr>().ok()?;
            words
                .any(|n| n.strip_suffix('.').unwrap_or(n).eq_ignore_ascii_case(name))
                .then_some(ip)
        })
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

// ===== packets =====

/// The record types we ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordType {
    A,
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => TYPE_A,
            RecordType::Aaaa => TYPE_AAAA,
        }
    }
}

/// `name` in wire format (length-prefixed labels, then 0), lower-cased.
fn encode_name(name: &str) -> Result<Vec<u8>, DnsError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err(DnsError::InvalidName("empty name".into()));
    }
    let mut wire = Vec::with_capacity(bare.len() + 2);
    for label in bare.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|len| (1..=63).contains(len))
            .ok_or_else(|| {
                DnsError::InvalidName(format!(
                    "{name:?}: labels must be 1 to 63 bytes long, {label:?} is not"
                ))
            })?;
        wire.push(len);
        wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    wire.push(0);
    if wire.len() > 255 {
        return Err(DnsError::InvalidName(format!(
            "{name:?} is longer than 255 bytes"
        )));
    }
    Ok(wire)
}

/// A recursive query for `qname` (wire format) with an EDNS0 OPT record.
fn build_query(id: u16, qname: &[u8], qtype: RecordType) -> Vec<u8> {
    let mut packet = Vec::with_capacity(12 + qname.len() + 4 + 11);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    packet.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    packet.extend_from_slice(&0u16.to_be_bytes()); // ANCOUNT
    packet.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    packet.extend_from_slice(&1u16.to_be_bytes()); // ARCOUNT: the OPT record
    packet.extend_from_slice(qname);
    packet.extend_from_slice(&qtype.code().to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root name, type 41, class = UDP payload size, TTL = 0, no data.
    packet.push(0);
    packet.extend_from_slice(&TYPE_OPT.to_be_bytes());
    packet.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    packet.extend_from_slice(&0u32.to_be_bytes());
    packet.extend_from_slice(&0u16.to_be_bytes());
    packet
}

/// The addresses of one answer (empty for NODATA) and the smallest TTL
/// along the way to them, in seconds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reply {
    addrs: Vec<IpAddr>,
    ttl: Option<u32>,
}

/// What a response to our query says.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Reply(Reply),
    NxDomain,
    ServerError(u8),
}

/// One answer record we care about.
#[derive(Debug)]
struct Record {
    owner: Vec<u8>,
    ttl: u32,
    data: RData,
}

#[derive(Debug)]
enum RData {
    Addr(IpAddr),
    Cname(Vec<u8>),
}

/// A bounds-checked reader over a message.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let bytes = self.msg.get(self.pos..end).ok_or("truncated message")?;
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<Vec<u8>, &'static str> {
        let (name, next) = read_name(self.msg, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Reads the (possibly compressed) name at `start`: returns it in
/// uncompressed, lower-cased wire format, and where the bytes after it begin.
fn read_name(msg: &[u8], start: usize) -> Result<(Vec<u8>, usize), &'static str> {
    let mut name = Vec::new();
    let mut pos = start;
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or("name runs past the end")?;
        match len & 0xC0 {
            0x00 if len == 0 => {
                name.push(0);
                pos += 1;
                break;
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or("label runs past the end")?;
                name.push(len);
                name.extend(label.iter().map(u8::to_ascii_lowercase));
                if name.len() > 255 {
                    return Err("name longer than 255 bytes");
                }
                pos += 1 + usize::from(len);
            }
            0xC0 => {
                let low = *msg.get(pos + 1).ok_or("pointer runs past the end")?;
                after.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS {
                    return Err("compression pointer loop");
                }
                pos = (usize::from(len & 0x3F) << 8) | usize::from(low);
            }
            _ => return Err("unknown label type"),
        }
    }
    Ok((name, after.unwrap_or(pos)))
}

/// Parses the response to query `id` for `qname`/`qtype`. `Err` means the
/// datagram is not a usable response to that query (another id, another
/// question, garbage) and should be ignored.
fn parse_response(
    msg: &[u8],
    id: u16,
    qname: &[u8],
    qtype: RecordType,
) -> Result<Parsed, &'static str> {
    let mut r = Reader { msg, pos: 0 };
    if r.u16()? != id {
        return Err("another query's id");
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err("not a response");
    }
    if (flags >> 11) & 0xF != 0 {
        return Err("not a standard query response");
    }
    let truncated = flags & 0x0200 != 0;
    let rcode = (flags & 0x000F) as u8;
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let _nscount = r.u16()?;
    let _arcount = r.u16()?;
    match qdcount {
        // Servers may leave the question out of error responses.
        0 if rcode != 0 => {}
        1 => {
            let name = r.name()?;
            let rtype = r.u16()?;
            let class = r.u16()?;
            if name != qname || rtype != qtype.code() || class != CLASS_IN {
                return Err("answers another question");
            }
        }
        _ => return Err("unexpected question count"),
    }
    match rcode {
        0 => {}
        RCODE_NXDOMAIN => return Ok(Parsed::NxDomain),
        other => return Ok(Parsed::ServerError(other)),
    }
    let mut records = Vec::new();
    for _ in 0..ancount {
        match read_record(&mut r, qtype) {
            Ok(Some(record)) => records.push(record),
            Ok(None) => {}
            // A truncated answer is used for the records it holds.
            Err(_) if truncated => break,
            Err(why) => return Err(why),
        }
    }
    Ok(Parsed::Reply(follow_chain(&records, qname)))
}

/// Reads one resource record; `None` for the kinds we do not use.
fn read_record(r: &mut Reader<'_>, qtype: RecordType) -> Result<Option<Record>, &'static str> {
    let owner = r.name()?;
    let rtype = r.u16()?;
    let class = r.u16()?;
    let ttl = r.u32()?;
    // RFC 2181 §8: a TTL with the top bit set is taken as 0.
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    let len = usize::from(r.u16()?);
    let start = r.pos;
    let rdata = r.bytes(len)?;
    if class != CLASS_IN {
        return Ok(None);
    }
    let data = match (rtype, qtype) {
        (TYPE_A, RecordType::A) => {
            let octets: [u8; 4] = rdata.try_into().map_err(|_| "A record not 4 bytes")?;
            RData::Addr(IpAddr::from(octets))
        }
        (TYPE_AAAA, RecordType::Aaaa) => {
            let octets: [u8; 16] = rdata.try_into().map_err(|_| "AAAA record not 16 bytes")?;
            RData::Addr(IpAddr::from(octets))
        }
        (TYPE_CNAME, _) => {
            // The target may point back into the message; it must not run
            // past its record's data.
            let (target, end) = read_name(r.msg, start)?;
            if end > start + len {
                return Err("CNAME runs past its record");
            }
            RData::Cname(target)
        }
        _ => return Ok(None),
    };
    Ok(Some(Record { owner, ttl, data }))
}

/// Follows CNAMEs from `qname` and collects the addresses of the name the
/// chain ends at, with the smallest TTL met.
fn follow_chain(records: &[Record], qname: &[u8]) -> Reply {
    let mut name = qname;
    let mut ttl: Option<u32> = None;
    for _ in 0..=MAX_CNAME_CHAIN {
        let mut addrs = Vec::new();
        let mut addr_ttl: Option<u32> = None;
        for record in records.iter().filter(|rec| rec.owner == name) {
            if let RData::Addr(ip) = record.data {
                addrs.push(ip);
                addr_ttl = Some(addr_ttl.map_or(record.ttl, |t| t.min(record.ttl)));
            }
        }
        if !addrs.is_empty() {
            let ttl = match (ttl, addr_ttl) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return Reply { addrs, ttl };
        }
        let cname = records.iter().find_map(|rec| match &rec.data {
            RData::Cname(target) if rec.owner == name => Some((target, rec.ttl)),
            _ => None,
        });
        match cname {
            Some((target, cname_ttl)) => {
                ttl = Some(ttl.map_or(cname_ttl, |t| t.min(cname_ttl)));
                name = target;
            }
            None => break,
        }
    }
    // NODATA (or a chain the server did not follow to its end).
    Reply::default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    // ----- packet builders for tests -----

    /// A response header plus the question for `name`/`qtype`.
    fn response(id: u16, rcode: u16, name: &str, qtype: u16, ancount: u16) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(&ancount.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
        p.extend_from_slice(&encode_name(name).unwrap());
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p
    }

    /// Appends a record whose owner is the compression pointer `owner`.
    fn record(p: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
        p.extend_from_slice(owner);
        p.extend_from_slice(&rtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p.extend_from_slice(&ttl.to_be_bytes());
        p.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
        p.extend_from_slice(rdata);
    }

    /// A pointer to the question's name (always at offset 12).
    const QNAME_PTR: [u8; 2] = [0xC0, 12];

    fn qname(name: &str) -> Vec<u8> {
        encode_name(name).unwrap()
    }

    fn reply(addrs: &[&str], ttl: Option<u32>) -> Parsed {
        Parsed::Reply(Reply {
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ttl,
        })
    }

    // ----- building -----

    #[test]
    fn encodes_names_in_wire_format() {
        assert_eq!(
            encode_name("Reviews.Default.").unwrap(),
            b"\x07reviews\x07default\x00"
        );
        assert_eq!(encode_name("a").unwrap(), b"\x01a\x00");
        for bad in ["", ".", "a..b", &"x".repeat(64), &["abc"; 70].join(".")] {
            assert!(
                matches!(encode_name(bad), Err(DnsError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn builds_a_recursive_query_with_edns() {
        let q = build_query(0xBEEF, &qname("a.b"), RecordType::Aaaa);
        assert_eq!(&q[..12], &[0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..17], b"\x01a\x01b\x00");
        assert_eq!(&q[17..21], &[0, 28, 0, 1]);
        // OPT: root, type 41, payload 1232, ttl 0, rdlen 0.
        assert_eq!(&q[21..], &[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    }

    // ----- parsing -----

    #[test]
    fn parses_addresses_and_the_smallest_ttl() {
        let mut p = response(7, 0, "web.local", TYPE_A, 2);
        record(&mut p, &QNAME_PTR, TYPE_A, 30, &[10, 0, 0, 1]);
        record(&mut p, &QNAME_PTR, TYPE_A, 20, &[10, 0, 0, 2]);
        assert_eq!(
            parse_response(&p, 7, &qname("web.local"), RecordType::A),
            Ok(reply(&["10.0.0.1", "10.0.0.2"], Some(20)))
        );
    }

    #[test]
    fn follows_a_cname_chain_and_takes_its_ttl() {
        // www.local CNAME edge.local (ttl 5); edge.local CNAME web.local (ttl 60);
        // web.local AAAA ::1 (ttl 300), listed out of order.
        let mut p = response(9, 0, "www.local", TYPE_AAAA, 4);
        let edge_at = p.len() + 12; // rdata of the first record
        record(&mut p, &QNAME_PTR, TYPE_CNAME, 5, b"\x04edge\xC0\x10");
        let web_at = u8::try_from(p.len() + 12).unwrap();
        record(
            &mut p,
            &[0xC0, u8::try_from(edge_at).unwrap()],
            TYPE_CNAME,
            60,
            b"\x03web\xC0\x10",
        );
        // An A record in an AAAA answer is ignored; so is another name's AAAA.
        record(&mut p, &[0xC0, web_at], TYPE_A, 1, &[1, 2, 3, 4]);
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        record(&mut p, &[0xC0, web_at], TYPE_AAAA, 300, &v6);
        assert_eq!(
            parse_response(&p, 9, &qname("www.local"), RecordType::Aaaa),
            Ok(reply(&["::1"], Some(5)))
        );
    }

    #[test]
    fn nodata_nxdomain_and_server_errors() {
        let p = response(1, 0, "a.local", TYPE_AAAA, 0);
        assert_eq!(
            parse_response(&p, 1, &qname("a.local"), RecordType::Aaaa),
            Ok(Parsed::Reply(Reply::default()))
        );
        let p = response(1, 3, "a.local", TYPE_A, 0);
        assert_eq!(
            parse_response(&p, 1, &qname("a.local"), RecordType::A),
            Ok(Parsed::NxDomain)
        );
        let p = response(1, 2, "a.local", TYPE_A, 0);
        assert_eq!(
            parse_response(&p, 1, &qname("a.local"), RecordType::A),
            Ok(Parsed::ServerError(2))
        );
    }

    #[test]
    fn ignores_responses_to_other_queries() {
        let p = response(1, 0, "a.local", TYPE_A, 0);
        let q = qname("a.local");
        assert!(parse_response(&p, 2, &q, RecordType::A).is_err(), "id");
        assert!(
            parse_response(&p, 1, &qname("b.local"), RecordType::A).is_err(),
            "name"
        );
        assert!(parse_response(&p, 1, &q, RecordType::Aaaa).is_err(), "type");
        // Our own query echoed back is not a response.
        let query = build_query(1, &q, RecordType::A);
        assert!(parse_response(&query, 1, &q, RecordType::A).is_err(), "QR");
        // The question matches case-insensitively.
        let p = response(1, 0, "A.Local", TYPE_A, 0);
        assert!(parse_response(&p, 1, &q, RecordType::A).is_ok());
    }

    #[test]
    fn rejects_pointer_loops_and_short_records() {
        let mut p = response(1, 0, "a.local", TYPE_A, 1);
        let at = u8::try_from(p.len()).unwrap();
        record(&mut p, &[0xC0, at], TYPE_A, 1, &[1, 2, 3, 4]); // owner points at itself
        assert!(parse_response(&p, 1, &qname("a.local"), RecordType::A).is_err());
        let mut p = response(1, 0, "a.local", TYPE_A, 1);
        record(&mut p, &QNAME_PTR, TYPE_A, 1, &[1, 2, 3]);
        assert!(parse_response(&p, 1, &qname("a.local"), RecordType::A).is_err());
        let mut p = response(1, 0, "a.local", TYPE_A, 2);
        record(&mut p, &QNAME_PTR, TYPE_A, 1, &[1, 2, 3, 4]);
        assert!(
            parse_response(&p, 1, &qname("a.local"), RecordType::A).is_err(),
            "ANCOUNT says 2, one is there"
        );
    }

    #[test]
    fn a_truncated_answer_gives_the_records_it_holds() {
        let mut p = response(1, 0, "a.local", TYPE_A, 3);
        p[2] |= 0x02; // TC
        record(&mut p, &QNAME_PTR, TYPE_A, 9, &[1, 2, 3, 4]);
        p.extend_from_slice(&QNAME_PTR); // the next record is cut short
        assert_eq!(
            parse_response(&p, 1, &qname("a.local"), RecordType::A),
            Ok(reply(&["1.2.3.4"], Some(9)))
        );
    }

    #[test]
    fn huge_ttls_count_as_zero() {
        let mut p = response(1, 0, "a.local", TYPE_A, 1);
        record(&mut p, &QNAME_PTR, TYPE_A, 0x8000_0000, &[1, 2, 3, 4]);
        assert_eq!(
            parse_response(&p, 1, &qname("a.local"), RecordType::A),
            Ok(reply(&["1.2.3.4"], Some(0)))
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), id: u16) {
            let _ = parse_response(&bytes, id, &qname("a.local"), RecordType::A);
            // With a valid header and question in front, the garbage reaches
            // the answer parser.
            let mut p = response(id, 0, "a.local", TYPE_A, u16::from(bytes.first().copied().unwrap_or(3)));
            p.extend_from_slice(&bytes);
            let _ = parse_response(&p, id, &qname("a.local"), RecordType::A);
        }

        #[test]
        fn mutated_answers_never_panic(
            cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            len in any::<prop::sample::Index>(),
        ) {
            let mut p = response(5, 0, "www.local", TYPE_A, 3);
            let edge_at = u8::try_from(p.len() + 12).unwrap();
            record(&mut p, &QNAME_PTR, TYPE_CNAME, 5, b"\x04edge\xC0\x10");
            record(&mut p, &[0xC0, edge_at], TYPE_A, 7, &[10, 0, 0, 1]);
            record(&mut p, &[0xC0, edge_at], TYPE_A, 7, &[10, 0, 0, 2]);
            for (at, byte) in cuts {
                let i = at.index(p.len());
                p[i] = byte;
            }
            p.truncate(len.index(p.len() + 1));
            let _ = parse_response(&p, 5, &qname("www.local"), RecordType::A);
        }

        #[test]
        fn answers_round_trip(addrs in proptest::collection::vec(any::<[u8; 4]>(), 1..40), ttls in proptest::collection::vec(0u32..100_000, 40)) {
            let mut p = response(3, 0, "x.local", TYPE_A, u16::try_from(addrs.len()).unwrap());
            for (a, ttl) in addrs.iter().zip(&ttls) {
                record(&mut p, &QNAME_PTR, TYPE_A, *ttl, a);
            }
            let want: Vec<IpAddr> = addrs.iter().map(|a| IpAddr::from(*a)).collect();
            let min = ttls[..addrs.len()].iter().min().copied();
            prop_assert_eq!(
                parse_response(&p, 3, &qname("x.local"), RecordType::A),
                Ok(Parsed::Reply(Reply { addrs: want, ttl: min }))
            );
        }
    }

    // ----- resolv.conf and hosts -----

    #[test]
    fn reads_resolv_conf_like_glibc() {
        let conf = ResolvConf::parse(
            "# generated\nsearch default.svc.cluster.local\nnameserver 10.0.0.10 # cluster DNS\n\
             nameserver  ::1\nnameserver fe80::1%eth0\n; nameserver 9.9.9.9\nnameserver 1.1.1.1\n\
             nameserver 8.8.8.8\nnameserver\noptions ndots:5 timeout:3 attempts:9\n",
        );
        assert_eq!(
            conf.servers,
            ["10.0.0.10:53", "[::1]:53", "1.1.1.1:53"].map(|s| s.parse::<SocketAddr>().unwrap())
        );
        assert_eq!(conf.timeout, Some(Duration::from_secs(3)));
        assert_eq!(conf.attempts, Some(5));

        let resolver = Resolver::from_resolv_conf("options rotate\n");
        assert_eq!(resolver.servers(), ["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(resolver.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn reads_hosts_files() {
        let hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n\
                     10.1.1.1 Web.Local web # comment mentions 10.9.9.9 other\n#10.2.2.2 web\n";
        assert_eq!(
            hosts_lookup(hosts, "localhost"),
            ["127.0.0.1", "::1"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            hosts_lookup(hosts, "web.local"),
            ["10.1.1.1".parse::<IpAddr>().unwrap()]
        );
        assert!(hosts_lookup(hosts, "other").is_empty());
    }

    #[tokio::test]
    async fn ip_literals_resolve_to_themselves() {
        // The server is unreachable: a query would fail.
        let resolver = Resolver::with_server("127.0.0.1:9".parse().unwrap())
            .with_timeout(Duration::from_millis(50), 1);
        let answer = resolver.lookup("10.0.0.7").await.unwrap();
        assert_eq!(answer.addrs, ["10.0.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(answer.ttl, None);
        assert!(resolver.lookup("web.local").await.is_err());
    }

    // ----- the watcher, on the paused clock -----

    type Script = Vec<Result<(Vec<&'static str>, Option<u64>), ()>>;

    /// Answers each name from a script (the last entry repeats) and records
    /// when it was asked, in whole milliseconds since the start.
    struct Fake {
        start: Instant,
        scripts: Mutex<HashMap<String, Script>>,
        calls: Mutex<Vec<(String, u128)>>,
    }

    impl Fake {
        fn new(scripts: &[(&str, Script)]) -> Arc<Fake> {
            Arc::new(Fake {
                start: Instant::now(),
                scripts: Mutex::new(
                    scripts
                        .iter()
                        .map(|(n, s)| ((*n).to_string(), s.clone()))
                        .collect(),
                ),
                calls: Mutex::default(),
            })
        }

        fn times(&self, name: &str) -> Vec<u128> {
            let calls = self.calls.lock().unwrap();
            calls
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .collect()
        }
    }

    impl Lookup for Fake {
        fn lookup(&self, name: &str) -> impl Future<Output = Result<Answer, DnsError>> + Send {
            let at = self.start.elapsed().as_millis();
            self.calls.lock().unwrap().push((name.to_string(), at));
            let mut scripts = self.scripts.lock().unwrap();
            let script = scripts.get_mut(name).unwrap();
            let step = if script.len() > 1 {
                script.remove(0)
            } else {
                script[0].clone()
            };
            let result = match step {
                Ok((addrs, ttl)) => Ok(Answer {
                    addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
                    ttl: ttl.map(Duration::from_secs),
                }),
                Err(()) => Err(DnsError::Timeout),
            };
            std::future::ready(result)
        }
    }

    fn ports(set: &EndpointSet) -> Vec<String> {
        set.snapshot()
            .iter()
            .map(|e| e.addr().to_string())
            .collect()
    }

    async fn run_for(
        fake: &Arc<Fake>,
        targets: Vec<DnsTarget>,
        refresh: u64,
        ms: u64,
    ) -> EndpointSet {
        let set = EndpointSet::new();
        let handle = watch_with(
            targets,
            set.clone(),
            fake.clone(),
            Duration::from_secs(refresh),
        );
        tokio::time::sleep(Duration::from_millis(ms)).await;
        drop(handle);
        set
    }

    #[tokio::test(start_paused = true)]
    async fn a_ttl_shorter_than_refresh_sets_the_pace() {
        let fake = Fake::new(&[("a", vec![Ok((vec!["10.0.0.1"], Some(2)))])]);
        run_for(&fake, vec![DnsTarget::new("a", 80)], 5, 6_500).await;
        assert_eq!(fake.times("a"), [0, 2_000, 4_000, 6_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_caps_a_long_ttl_and_applies_without_one() {
        let fake = Fake::new(&[
            ("long", vec![Ok((vec!["10.0.0.1"], Some(300)))]),
            ("none", vec![Ok((vec!["10.0.0.2"], None))]),
        ]);
        let targets = vec![DnsTarget::new("long", 80), DnsTarget::new("none", 80)];
        run_for(&fake, targets, 5, 10_500).await;
        assert_eq!(fake.times("long"), [0, 5_000, 10_000]);
        assert_eq!(fake.times("none"), [0, 5_000, 10_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_is_held_to_once_a_second() {
        let fake = Fake::new(&[("z", vec![Ok((vec!["10.0.0.1"], Some(0)))])]);
        run_for(&fake, vec![DnsTarget::new("z", 80)], 5, 3_500).await;
        assert_eq!(fake.times("z"), [0, 1_000, 2_000, 3_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_keep_the_last_good_endpoints_and_retry_after_refresh() {
        let fake = Fake::new(&[(
            "web",
            vec![
                Err(()), // the first lookup fails: nothing yet
                Ok((vec!["10.0.0.1", "10.0.0.2"], Some(1))),
                Err(()),
                Err(()),
                Ok((vec!["10.0.0.3"], Some(60))),
            ],
        )]);
        let set = EndpointSet::new();
        let handle = watch_with(
            vec![DnsTarget::new("web", 9080)],
            set.clone(),
            fake.clone(),
            Duration::from_secs(5),
        );
        handle.first_round().await;
        assert_eq!(
            handle.stats(),
            WatchStats {
                resolved: 0,
                failed: 1,
                pending: 0
            }
        );
        assert!(set.is_empty());
        tokio::time::sleep(Duration::from_millis(5_100)).await; // t = 5.1 s
        assert_eq!(ports(&set), ["10.0.0.1:9080", "10.0.0.2:9080"]);
        tokio::time::sleep(Duration::from_secs(6)).await; // t = 11.1 s: two failures
        assert_eq!(handle.stats().failed, 3);
        assert_eq!(ports(&set), ["10.0.0.1:9080", "10.0.0.2:9080"], "kept");
        tokio::time::sleep(Duration::from_secs(5)).await; // t = 16.1 s
        assert_eq!(ports(&set), ["10.0.0.3:9080"]);
        assert_eq!(fake.times("web"), [0, 5_000, 6_000, 11_000, 16_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn targets_merge_into_one_set_with_their_metadata() {
        let fake = Fake::new(&[
            ("v1", vec![Ok((vec!["10.0.0.1", "::1"], Some(30)))]),
            ("v2", vec![Ok((vec!["10.0.0.2"], Some(30)))]),
            ("gone", vec![Err(())]),
        ]);
        let mut v2 = DnsTarget::new("v2", 9090);
        v2.labels.insert("version".into(), "v2".into());
        v2.weight = 3;
        v2.locality = Locality::parse("eu/west");
        let set = EndpointSet::from_endpoints([Endpoint::new("10.9.9.9:1".parse().unwrap())]);
        let handle = watch_with(
            vec![DnsTarget::new("v1", 9080), v2, DnsTarget::new("gone", 1)],
            set.clone(),
            fake.clone(),
            Duration::from_secs(5),
        );
        handle.first_round().await;
        assert_eq!(
            handle.stats(),
            WatchStats {
                resolved: 2,
                failed: 1,
                pending: 0
            }
        );
        assert_eq!(
            ports(&set),
            ["10.0.0.1:9080", "10.0.0.2:9090", "[::1]:9080"]
        );
        let v2 = set
            .snapshot()
            .into_iter()
            .find(|e| e.addr().port() == 9090)
            .unwrap();
        assert_eq!(v2.labels()["version"], "v2");
        assert_eq!(v2.weight().get(), 3);
        assert_eq!(v2.locality(), &Locality::parse("eu/west"));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_handle_stops_the_lookups() {
        let fake = Fake::new(&[("a", vec![Ok((vec!["10.0.0.1"], Some(1)))])]);
        run_for(&fake, vec![DnsTarget::new("a", 80)], 5, 2_500).await;
        let before = fake.times("a").len();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(fake.times("a").len(), before);
        assert_eq!(before, 3);
    }

    #[test]
    fn intervals() {
        let s = Duration::from_secs;
        assert_eq!(next_interval(Some(s(2)), s(5)), s(2));
        assert_eq!(next_interval(Some(s(60)), s(5)), s(5));
        assert_eq!(next_interval(None, s(5)), s(5));
        assert_eq!(next_interval(Some(s(0)), s(5)), s(1));
        assert_eq!(next_interval(None, Duration::from_millis(10)), s(1));
    }
}
