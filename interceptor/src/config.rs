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
    /// Entries of the connect-record maps (LRU: an evicted record makes the
    /// proxy refuse that connection, never pass it).
    pub max_connections: u32,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        Self {
            cgroups: Vec::new(),
            mode: AttachMode::Cgroup,
            attach_to: None,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            unix_sockets: UnixSocketPolicy::Redirect,
            max_connections: 65_536,
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
}

fn default_pg_port() -> u16 {
    5432
}

impl Target {
    /// Whether a connect to `dst` is one of this target's.
    pub fn matches(&self, dst: SocketAddr) -> bool {
        dst.port() == self.port
            && (self.addrs.is_empty() || self.addrs.iter().any(|net| net.contains(dst.ip())))
    }
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
        Self::parse(path, &text)
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
