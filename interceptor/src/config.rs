//! The daemon's configuration: typed TOML, `deny_unknown_fields`, validated
//! after parsing. Every error names the file, the line and what to change.
//!
//! ```toml
//! state_dir = "/var/lib/interceptor"
//!
//! [proxy]
//! listen = "127.0.0.1:15432"
//! listen6 = "[::1]:15432"
//!
//! [ebpf]
//! cgroups = ["ci-runners"]          # relative to the cgroup v2 mount, or absolute
//!
//! [[target]]
//! name = "main-db"
//! addrs = ["127.0.0.1/32"]           # destination ranges redirected; empty = any address
//! port = 5432
//! upstream = "127.0.0.1:5432"        # default: the original destination
//! tls = "disable"                    # disable | require | verify-full
//!
//! [credentials]
//! file = "/etc/interceptor/credentials.toml"
//! ```

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::Deserialize;

/// Where the daemon keeps its state by default (TLS key, bpffs pins are elsewhere).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/interceptor";
/// Default bpffs directory for the pinned links and maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/interceptor";

/// A configuration mistake, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file the mistake is in.
    pub file: PathBuf,
    /// 1-based line, when the mistake can be placed.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Root-only directory for the daemon's own state (TLS certificate and key).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Listeners and limits of the proxy.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Which cgroups are watched and how the programs are attached.
    #[serde(default)]
    pub ebpf: EbpfConfig,
    /// The databases whose connections are intercepted.
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    /// Where the real database credentials come from.
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// Where the policy set lives.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The audit log (`[audit]`): directory, rotation, checkpoints, durability.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Just-in-time approval (`[approvals]`); unset: `approve` statements
    /// are refused.
    #[serde(default)]
    pub approvals: Option<crate::approval::ApprovalsConfig>,
    /// The admin socket the CLI talks to the daemon through (`[admin]`).
    #[serde(default)]
    pub admin: crate::admin::AdminConfig,
    /// Workload tokens: trusted issuers and the host's own issuer (`[token]`).
    #[serde(default)]
    pub token: crate::token::TokenConfig,
    /// The connection masking reads the catalog through (`[catalog]`).
    #[serde(default)]
    pub catalog: crate::mask::catalog::CatalogConfig,
    /// Prometheus metrics and health endpoints (`[metrics]`).
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
}

/// Where the policy set lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory of policy files (`*.toml`); test cases in its `tests/`.
    /// Re-read on SIGHUP and when a file in it changes.
    pub dir: PathBuf,
    /// Seconds between checks of the directory for changes (0 = SIGHUP only).
    pub watch_secs: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/etc/interceptor/policies"),
            watch_secs: 2,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// Listeners and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// IPv4 loopback listener that redirected IPv4 (and v4-mapped) connects land on.
    pub listen: SocketAddr,
    /// IPv6 loopback listener for redirected IPv6 connects; `None` refuses them.
    pub listen6: Option<SocketAddr>,
    /// Unix socket that `.s.PGSQL.*` connects from watched cgroups are sent to.
    pub unix_socket: Option<PathBuf>,
    /// Target used for connections made straight to the listener (not
    /// redirected), e.g. by a pipeline pointed at the proxy on purpose or a
    /// benchmark; `None` refuses them.
    pub explicit_target: Option<String>,
    /// Largest frontend or backend message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Upstream connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// TLS certificate (PEM) offered to clients that ask for TLS; generated
    /// under `state_dir` on first start when not set.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 15432)),
            listen6: None,
            unix_socket: None,
            explicit_target: None,
            // PostgreSQL itself accepts up to 1 GiB; 64 MiB covers large COPY
            // rows and bulk inserts while bounding what one client can pin.
            max_message_bytes: 64 << 20,
            connect_timeout_ms: 5_000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// How the kernel programs are attached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfConfig {
    /// Watched cgroup v2 directories; relative paths are taken from the cgroup
    /// v2 mount (detected). The programs are attached to each.
    pub cgroups: Vec<PathBuf>,
    /// `cgroup` (default): attach to each watched cgroup; a socket is judged by
    /// the cgroup it was created in. `task`: attach to `attach_to` (an
    /// ancestor) and decide by the calling task's current cgroup, which also
    /// catches sockets created before the task moved into a watched cgroup.
    pub mode: AttachMode,
    /// Ancestor cgroup the programs are attached to in `task` mode.
    pub attach_to: Option<PathBuf>,
    /// bpffs directory for pinned links and maps.
    pub pin_dir: PathBuf,
    /// What happens to a watched process's connect to a PostgreSQL unix socket.
    pub unix_sockets: UnixSocketPolicy,
    /// When set, a watched process may connect only to these unix socket
    /// paths (exact; `@name` for an abstract name) besides the PostgreSQL
    /// names `unix_sockets` handles: a PostgreSQL socket reached by another
    /// name (symlink, hard link, bind mount, `/proc/self/fd/N`) is refused
    /// with everything else unlisted. Unset: only PostgreSQL names are looked at.
    pub unix_allow: Option<Vec<String>>,
    /// Entries of the connect-record maps (LRU: an evicted record makes the
    /// proxy refuse that connection, never pass it).
    pub max_connections: u32,
    /// Ports whose connects from watched processes are refused (EPERM) on
    /// any address, unless a target redirects them: the other ports of a
    /// database, poolers, forwarders and replicas (e.g. `[5433, 6432]`).
    /// The target ports themselves need not be listed.
    pub refuse_ports: Vec<u16>,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        Self {
            cgroups: Vec::new(),
            mode: AttachMode::Cgroup,
            attach_to: None,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            unix_sockets: UnixSocketPolicy::Redirect,
            unix_allow: None,
            max_connections: 65_536,
            refuse_ports: Vec::new(),
        }
    }
}

/// See [`EbpfConfig::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// Attach to each watched cgroup.
    Cgroup,
    /// Attach to an ancestor and decide by the task's cgroup.
    Task,
}

/// See [`EbpfConfig::unix_sockets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnixSocketPolicy {
    /// Rewrite the path to the proxy's unix socket (needs `proxy.unix_socket`);
    /// falls back to `refuse` when it is not set.
    Redirect,
    /// Refuse the connect (EPERM).
    Refuse,
}

/// A database whose connections are intercepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Name used in credentials, logs and (later) policy.
    pub name: String,
    /// Destination ranges (CIDR or single address) redirected; empty = any.
    #[serde(default)]
    pub addrs: Vec<IpNet>,
    /// Destination port redirected.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Where the proxy connects; default: the original destination.
    #[serde(default)]
    pub upstream: Option<SocketAddr>,
    /// TLS towards the upstream server.
    #[serde(default)]
    pub tls: UpstreamTls,
    /// CA bundle (PEM) used to verify the upstream server; default: system roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Name checked against the upstream certificate; default: the upstream host.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// When `addrs` name this host (a loopback address, the unspecified
    /// address or one of its interface addresses), redirect every spelling
    /// of this host on the port: all of 127.0.0.0/8, `0.0.0.0`, `::1`, `::`,
    /// the interface addresses, and the v4-mapped form of each. A server
    /// listening on all addresses is reached through any of them, and the
    /// kernel turns the unspecified address into loopback after the connect
    /// hook has seen it. Default true.
    #[serde(default = "yes")]
    pub this_host: bool,
    /// The other spellings of this host, filled when the configuration is
    /// loaded (see [`Self::this_host`]).
    #[serde(skip)]
    pub host_aliases: Vec<IpNet>,
}

fn default_pg_port() -> u16 {
    5432
}

fn yes() -> bool {
    true
}

impl Target {
    /// Whether a connect to `dst` is one of this target's.
    pub fn matches(&self, dst: SocketAddr) -> bool {
        dst.port() == self.port
            && (self.addrs.is_empty()
                || self
                    .addrs
                    .iter()
                    .chain(&self.host_aliases)
                    .any(|net| net.contains(dst.ip())))
    }

    /// Every range redirected: `addrs` and the spellings of this host.
    pub fn all_addrs(&self) -> impl Iterator<Item = &IpNet> {
        self.addrs.iter().chain(&self.host_aliases)
    }

    /// Fills [`Self::host_aliases`] given this host's interface addresses.
    pub fn resolve_host_aliases(&mut self, local: &[IpAddr]) {
        self.host_aliases =
            if self.this_host && self.addrs.iter().any(|n| names_this_host(n, local)) {
                this_host_spellings(local)
                    .into_iter()
                    .filter(|a| !self.addrs.iter().any(|n| n.covers(a)))
                    .collect()
            } else {
                Vec::new()
            };
    }
}

/// Whether a configured range names this host.
fn names_this_host(net: &IpNet, local: &[IpAddr]) -> bool {
    let addr = match net.addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(net.addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    addr.is_loopback()
        || addr.is_unspecified()
        || local.contains(&addr)
        || local.iter().any(|l| net.contains(*l))
}

/// All the addresses that reach this host: 127.0.0.0/8, `0.0.0.0`, `::1`,
/// `::` and the interface addresses (v4 ranges also match their v4-mapped
/// IPv6 forms).
pub fn this_host_spellings(local: &[IpAddr]) -> Vec<IpNet> {
    let mut out = vec![
        IpNet {
            addr: IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)),
            prefix: 8,
        },
        IpNet {
            addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            prefix: 32,
        },
        IpNet {
            addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
        IpNet {
            addr: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            prefix: 128,
        },
    ];
    for ip in local {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            IpAddr::V4(_) => *ip,
        };
        let net = IpNet {
            addr: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        };
        if !out.iter().any(|n| n.covers(&net)) {
            out.push(net);
        }
    }
    out
}

/// One line per target for `check-config`: what is redirected.
pub fn describe_target(t: &Target) -> String {
    let show = |nets: &[IpNet]| {
        nets.iter()
            .map(IpNet::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let addrs = if t.addrs.is_empty() {
        "any address".to_owned()
    } else {
        show(&t.addrs)
    };
    let aliases = if t.host_aliases.is_empty() {
        String::new()
    } else {
        format!(" + this host as {}", show(&t.host_aliases))
    };
    format!("target `{}`: port {} on {addrs}{aliases}", t.name, t.port)
}

/// Ports PostgreSQL servers, poolers and forwarders usually listen on.
pub const DATABASE_PORTS: &[(u16, &str)] = &[
    (5432, "PostgreSQL"),
    (5433, "PostgreSQL"),
    (5434, "PostgreSQL"),
    (5435, "PostgreSQL"),
    (5436, "PostgreSQL"),
    (5437, "PostgreSQL"),
    (5438, "PostgreSQL"),
    (5439, "PostgreSQL / Redshift"),
    (6432, "pgbouncer / pgcat / odyssey"),
    (6543, "supavisor / pgcat"),
];

/// Warnings for listeners on this host that look like a database, a
/// pooler or a forwarder and that no target redirects: a watched process
/// reaches them unrecorded.
pub fn uncovered_listeners(config: &Config, listening: &[SocketAddr]) -> Vec<String> {
    let mut out = Vec::new();
    for addr in listening {
        let Some((_, what)) = DATABASE_PORTS.iter().find(|(p, _)| *p == addr.port()) else {
            continue;
        };
        let own = [Some(config.proxy.listen), config.proxy.listen6]
            .into_iter()
            .flatten()
            .any(|l| l.port() == addr.port());
        // A listener on all addresses is reached through loopback.
        let probe = if addr.ip().is_unspecified() {
            SocketAddr::new(
                if addr.is_ipv4() {
                    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
                },
                addr.port(),
            )
        } else {
            *addr
        };
        let refused = config.ebpf.refuse_ports.contains(&addr.port());
        if !own && !refused && !config.targets.iter().any(|t| t.matches(probe)) {
            out.push(format!(
                "{addr} is listening on port {} (usually {what}) and no [[target]] redirects it: a watched process \
                 reaches it unrecorded (fix: add a [[target]] with port = {}, or [ebpf] refuse_ports = [{}])",
                addr.port(),
                addr.port(),
                addr.port()
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// TCP sockets listening on this host (`/proc/net/tcp`, `/proc/net/tcp6`).
pub fn local_listeners() -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        out.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| parse_proc_net_listener(l, v6)),
        );
    }
    out
}

/// One line of /proc/net/tcp{,6}: the local address when the socket listens.
fn parse_proc_net_listener(line: &str, v6: bool) -> Option<SocketAddr> {
    let mut f = line.split_whitespace();
    let local = f.nth(1)?;
    let state = f.nth(1)?;
    if state != "0A" {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = if v6 {
        // Four 32-bit words, each in host (little-endian) order.
        let mut bytes = [0_u8; 16];
        for (i, chunk) in ip.as_bytes().chunks(8).enumerate().take(4) {
            let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        IpAddr::V6(std::net::Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_le_bytes(),
        ))
    };
    Some(SocketAddr::new(ip, port))
}

/// This host's interface addresses (`getifaddrs`); none when they cannot
/// be read (the loopback and unspecified spellings still hold).
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// TLS mode towards the upstream, named as libpq names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS, the certificate is not verified.
    Require,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// Where credentials come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// Root-only TOML file of `[[credential]]` entries; refused if group- or
    /// world-readable.
    pub file: Option<PathBuf>,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self { file: None }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (default, one event per line) or `text`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
        }
    }
}

/// See [`LogConfig::format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One JSON object per event.
    Json,
    /// Human-readable lines.
    Text,
}

/// An IPv4 or IPv6 network in CIDR notation; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// Network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses are
    /// compared as IPv4, so `::ffff:a.b.c.d` is no way around a v4 range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether every address of `other` lies in this network.
    pub fn covers(&self, other: &IpNet) -> bool {
        let (a, pa) = self.to_mapped();
        let (b, pb) = other.to_mapped();
        if pb < pa {
            return false;
        }
        let mask = u128::MAX.checked_shl(128 - u32::from(pa)).unwrap_or(0);
        u128::from_be_bytes(a) & mask == u128::from_be_bytes(b) & mask
    }

    /// The network as 16 bytes (IPv4 as v4-mapped IPv6) and a prefix over
    /// those 128 bits: the form the kernel programs compare with.
    pub fn to_mapped(&self) -> ([u8; 16], u8) {
        match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), self.prefix + 96),
            IpAddr::V6(v6) => (v6.octets(), self.prefix),
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?,
            None => max,
        };
        let net = IpNet { addr, prefix };
        // Clear host bits so equality and the kernel-side compare agree.
        let addr = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Ok(IpNet { addr, ..net })
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read the configuration: {e}"),
            fix: Some("pass an existing file with --config".into()),
        })?;
        let mut config = Self::parse(path, &text)?;
        let local = local_addresses();
        for t in &mut config.targets {
            t.resolve_host_aliases(&local);
        }
        Ok(config)
    }

    /// Parses and validates `text`, which was read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().to_owned(),
            fix: Some("see the Configuration section of the README for the fields".into()),
        })?;
        config.validate(path, text)?;
        Ok(config)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |needle: &str, message: String, fix: &str| ConfigError {
            file: path.to_owned(),
            line: find_line(text, needle),
            message,
            fix: Some(fix.to_owned()),
        };
        if self.targets.is_empty() {
            return Err(err(
                "[[target]]",
                "no [[target]] is configured: nothing would be intercepted".into(),
                "add a [[target]] with a name and the database port",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.targets {
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(err(
                    &format!("name = \"{}\"", t.name),
                    format!("target name `{}` is empty or used twice", t.name),
                    "give each [[target]] a distinct, non-empty name",
                ));
            }
            if t.port == 0 {
                return Err(err(
                    "port",
                    format!("target `{}` has port 0", t.name),
                    "set the database port, e.g. port = 5432",
                ));
            }
            for l in [Some(self.proxy.listen), self.proxy.listen6]
                .into_iter()
                .flatten()
            {
                if t.matches(l) {
                    return Err(err(
                        "listen",
                        format!(
                            "the proxy listener {l} is itself a destination of target `{}`: \
                             redirected connects would loop",
                            t.name
                        ),
                        "use a proxy port that no target redirects",
                    ));
                }
            }
        }
        for l in [Some(self.proxy.listen), self.proxy.listen6]
            .into_iter()
            .flatten()
        {
            if !l.ip().is_loopback() {
                return Err(err(
                    "listen",
                    format!("proxy listener {l} is not a loopback address"),
                    "listen on 127.0.0.1 or [::1]: only local processes are redirected to it",
                ));
            }
        }
        if self.proxy.listen6.is_some_and(|l| !l.is_ipv6()) {
            return Err(err(
                "listen6",
                "listen6 must be an IPv6 address".into(),
                "e.g. listen6 = \"[::1]:15432\"",
            ));
        }
        if !self.proxy.listen.is_ipv4() {
            return Err(err(
                "listen",
                "listen must be an IPv4 address".into(),
                "e.g. listen = \"127.0.0.1:15432\"",
            ));
        }
        if let Some(name) = &self.proxy.explicit_target
            && !self.targets.iter().any(|t| &t.name == name)
        {
            return Err(err(
                "explicit_target",
                format!("explicit_target `{name}` names no [[target]]"),
                "use the name of a configured [[target]] or remove explicit_target",
            ));
        }
        if self.proxy.max_message_bytes < 1024 {
            return Err(err(
                "max_message_bytes",
                "max_message_bytes is below 1024".into(),
                "use at least a few MiB; PostgreSQL messages often exceed a few KiB",
            ));
        }
        if self.proxy.tls_cert.is_some() != self.proxy.tls_key.is_some() {
            return Err(err(
                "tls_",
                "tls_cert and tls_key go together".into(),
                "set both or neither",
            ));
        }
        if self.ebpf.mode == AttachMode::Task && self.ebpf.attach_to.is_none() {
            return Err(err(
                "mode",
                "mode = \"task\" needs attach_to (the ancestor cgroup to attach to)".into(),
                "set attach_to to a cgroup that contains the watched cgroups",
            ));
        }
        for entry in self.ebpf.unix_allow.iter().flatten() {
            if let Err(message) = crate::ebpf::unix::allow_key(entry) {
                return Err(err(
                    entry,
                    message,
                    "list absolute socket paths, or @name for an abstract socket",
                ));
            }
        }
        if self
            .ebpf
            .unix_allow
            .as_ref()
            .is_some_and(|l| l.len() > crate::ebpf::MAX_UNIX_ALLOW)
        {
            return Err(err(
                "unix_allow",
                format!(
                    "unix_allow lists more than {} paths",
                    crate::ebpf::MAX_UNIX_ALLOW
                ),
                "list fewer paths",
            ));
        }
        if self.ebpf.max_connections < 16 {
            return Err(err(
                "max_connections",
                "max_connections is below 16".into(),
                "use e.g. 65536",
            ));
        }
        if let Some(a) = &self.approvals
            && let Err((needle, message, fix)) = a.validate()
        {
            return Err(ConfigError {
                file: path.to_owned(),
                line: find_line(text, &needle).or_else(|| find_line(text, "[approvals]")),
                message,
                fix: Some(fix),
            });
        }
        if !self.admin.socket.is_absolute() {
            return Err(err(
                "socket",
                "[admin] socket must be an absolute path".into(),
                "e.g. socket = \"/run/interceptor/admin.sock\"",
            ));
        }
        if let Err(e) = self.token.validate() {
            return Err(ConfigError {
                file: path.to_owned(),
                line: find_line(text, &e.needle).or_else(|| find_line(text, "[token")),
                message: e.message,
                fix: Some(e.fix),
            });
        }
        Ok(())
    }

    /// The host token signing key: `[token] host_key`, else `<state_dir>/tokens/host.key`.
    pub fn token_host_key(&self) -> PathBuf {
        self.token
            .host_key
            .clone()
            .unwrap_or_else(|| self.state_dir.join("tokens").join("host.key"))
    }

    /// The host token store: `[token] store`, else `<state_dir>/tokens`.
    pub fn token_store(&self) -> PathBuf {
        self.token
            .store
            .clone()
            .unwrap_or_else(|| self.state_dir.join("tokens"))
    }

    /// The target a connect to `dst` belongs to.
    pub fn target_for(&self, dst: SocketAddr) -> Option<&Target> {
        self.targets.iter().find(|t| t.matches(dst))
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// 1-based line of byte offset `pos` in `text`.
pub fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// 1-based line of the first occurrence of `needle`, if any.
fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|pos| line_of(text, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("[[target]]\nname = \"db\"\n").unwrap();
        assert_eq!(c.targets[0].port, 5432);
        assert_eq!(c.proxy.listen, "127.0.0.1:15432".parse().unwrap());
        assert_eq!(c.ebpf.mode, AttachMode::Cgroup);
    }

    #[test]
    fn approvals_table_is_checked_with_lines() {
        let base = "[[target]]\nname = \"db\"\n\n[approvals]\nhttp = \"127.0.0.1:8181\"\n";
        let c = parse(base).unwrap();
        let a = c.approvals.unwrap();
        assert_eq!(a.default_expiry(), std::time::Duration::from_mins(15));
        assert!(
            parse("[[target]]\nname = \"db\"\n")
                .unwrap()
                .approvals
                .is_none(),
            "no [approvals]: no workflow"
        );
        let e = parse(&format!("{base}default_expiry = \"soon\"\n")).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        let e = parse(&format!(
            "{base}[[approvals.approver]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        let e = parse(&format!("{base}[[approvals.webhook]]\nurl = \"ftp://x\"\n")).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        let e = parse(&format!(
            "{base}[[approvals.approver]]\nname = \"a\"\ntokn = \"x\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
    }

    #[test]
    fn unknown_field_names_line() {
        let e = parse("[[target]]\nname = \"db\"\nprot = 5432\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("prot"), "{e}");
    }

    #[test]
    fn listener_that_is_a_target_is_refused() {
        let e =
            parse("[proxy]\nlisten = \"127.0.0.1:5432\"\n[[target]]\nname = \"db\"\n").unwrap_err();
        assert!(e.message.contains("loop"), "{e}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn non_loopback_listener_is_refused() {
        let e =
            parse("[proxy]\nlisten = \"0.0.0.0:15432\"\n[[target]]\nname = \"db\"\n").unwrap_err();
        assert!(e.message.contains("loopback"), "{e}");
    }

    #[test]
    fn ipnet_contains_v4_mapped() {
        let net: IpNet = "127.0.0.0/8".parse().unwrap();
        assert!(net.contains("127.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:127.1.2.3".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let (a, p) = net.to_mapped();
        assert_eq!(p, 104);
        assert_eq!(&a[10..13], &[0xff, 0xff, 127]);
        assert!("127.0.0.1/33".parse::<IpNet>().is_err());
    }

    #[test]
    fn token_issuer_mistakes_name_their_line() {
        let text = "[[target]]\nname = \"db\"\n[token]\nmax_ttl = \"15m\"\n[[token.issuer]]\nname = \"gh\"\n\
                    issuer = \"https://token.actions.githubusercontent.com\"\naudiences = [\"db\"]\n\
                    jwks_url = \"http://jwks.example.invalid/jwks\"\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
        assert!(
            e.to_string().contains("non-loopback") && e.to_string().contains("fix:"),
            "{e}"
        );
        let e = parse("[[target]]\nname = \"db\"\n[token]\nmax_ttl = \"forever\"\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        let ok = parse("[[target]]\nname = \"db\"\n[admin]\nsocket = \"/tmp/a.sock\"\n[token]\nmax_ttl = \"15m\"\n").unwrap();
        assert_eq!(ok.token.max_ttl, std::time::Duration::from_mins(15));
        assert_eq!(
            ok.token_store(),
            PathBuf::from("/var/lib/interceptor/tokens")
        );
    }

    #[test]
    fn target_matching() {
        let c = parse("[[target]]\nname = \"a\"\naddrs = [\"127.0.0.2\"]\n[[target]]\nname = \"b\"\nport = 6432\n").unwrap();
        assert_eq!(
            c.target_for("127.0.0.2:5432".parse().unwrap())
                .unwrap()
                .name,
            "a"
        );
        assert!(c.target_for("127.0.0.3:5432".parse().unwrap()).is_none());
        assert_eq!(
            c.target_for("[::1]:6432".parse().unwrap()).unwrap().name,
            "b"
        );
    }
}

#[cfg(test)]
mod this_host_tests {
    use super::*;

    fn target(addrs: &str) -> Target {
        let text = format!("[[target]]\nname = \"a\"\naddrs = [{addrs}]\n");
        Config::parse(Path::new("t.toml"), &text)
            .unwrap()
            .targets
            .remove(0)
    }

    fn dst(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_loopback_target_catches_every_spelling_of_this_host() {
        // 192.0.2.7 / 2001:db8::7 stand for interface addresses (documentation
        // ranges: parsed, never dialled).
        let local: Vec<IpAddr> = vec![
            "127.0.0.1".parse().unwrap(),
            "192.0.2.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ];
        let mut t = target("\"127.0.0.1/32\", \"::1\"");
        t.resolve_host_aliases(&local);
        for d in [
            "127.0.0.1:5432",
            "127.0.0.2:5432",
            "127.255.255.254:5432",
            "0.0.0.0:5432",
            "[::]:5432",
            "[::1]:5432",
            "[::ffff:0.0.0.0]:5432",
            "[::ffff:127.3.4.5]:5432",
            "192.0.2.7:5432",
            "[::ffff:192.0.2.7]:5432",
            "[2001:db8::7]:5432",
        ] {
            assert!(t.matches(dst(d)), "{d}");
        }
        for d in [
            "127.0.0.1:5433",
            "192.0.2.8:5432",
            "[2001:db8::8]:5432",
            "[fe80::1]:5432",
        ] {
            assert!(!t.matches(dst(d)), "{d}");
        }
        assert!(
            describe_target(&t).contains(
                "+ this host as 127.0.0.0/8, 0.0.0.0/32, ::/128, 192.0.2.7/32, 2001:db8::7/128"
            ),
            "{}",
            describe_target(&t)
        );
    }

    #[test]
    fn other_hosts_and_opted_out_targets_get_no_aliases() {
        let local: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap()];
        let mut remote = target("\"198.51.100.0/24\"");
        remote.resolve_host_aliases(&local);
        assert!(remote.host_aliases.is_empty());
        assert!(!remote.matches(dst("127.0.0.1:5432")));
        // An interface address names this host too.
        let mut own = target("\"192.0.2.7\"");
        own.resolve_host_aliases(&local);
        assert!(own.matches(dst("0.0.0.0:5432")) && own.matches(dst("127.0.0.9:5432")));
        let text = "[[target]]\nname = \"a\"\naddrs = [\"127.0.0.1\"]\nthis_host = false\n";
        let mut off = Config::parse(Path::new("t.toml"), text)
            .unwrap()
            .targets
            .remove(0);
        off.resolve_host_aliases(&local);
        assert!(!off.matches(dst("0.0.0.0:5432")));
        // No ranges: every address already.
        let mut any = Config::parse(Path::new("t.toml"), "[[target]]\nname = \"a\"\n")
            .unwrap()
            .targets
            .remove(0);
        any.resolve_host_aliases(&local);
        assert!(any.host_aliases.is_empty() && any.matches(dst("0.0.0.0:5432")));
    }

    #[test]
    fn listeners_on_database_ports_no_target_covers_are_named() {
        let text = "[proxy]\nlisten = \"127.0.0.1:15432\"\n[[target]]\nname = \"a\"\naddrs = [\"127.0.0.1\"]\nport = 5432\n";
        let mut c = Config::parse(Path::new("t.toml"), text).unwrap();
        c.targets[0].resolve_host_aliases(&[]);
        let listening = [
            dst("127.0.0.1:5432"),
            dst("0.0.0.0:6432"),
            dst("[::]:5433"),
            dst("127.0.0.1:8080"),
            dst("127.0.0.1:15432"),
        ];
        let w = uncovered_listeners(&c, &listening);
        assert_eq!(w.len(), 2, "{w:?}");
        c.ebpf.refuse_ports = vec![6432];
        assert_eq!(uncovered_listeners(&c, &listening).len(), 1);
        c.ebpf.refuse_ports.clear();
        assert!(
            w[0].contains("0.0.0.0:6432") && w[0].contains("pgbouncer"),
            "{w:?}"
        );
        assert!(
            w[1].contains("[::]:5433") && w[1].contains("port = 5433"),
            "{w:?}"
        );
    }

    #[test]
    fn proc_net_tcp_lines() {
        let v4 = "   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   114        0 33211 1";
        assert_eq!(
            parse_proc_net_listener(v4, false),
            Some(dst("127.0.0.1:5432"))
        );
        let est = "   1: 0100007F:1538 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   114        0 33211 1";
        assert_eq!(parse_proc_net_listener(est, false), None);
        let v6 = "   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   114        0 1 1";
        assert_eq!(parse_proc_net_listener(v6, true), Some(dst("[::1]:5432")));
    }
}
