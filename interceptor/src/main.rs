//! The `interceptor` command: the daemon (`run`) and the operator's tools.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use interceptor::{
    admin, approval,
    audit::{self, AuditLog},
    config::{self, Config, LogFormat},
    ebpf::{self, ConnectRecord, Redirector},
    policy::{PolicyStore, session::PolicyFactory},
    proxy::{self, Listeners, OrigDstLookup},
    token::{HostIssuer, HostIssuerConfig, Validator, admin::TokenAdmin},
};
use tokio::net::{TcpListener, UnixListener};

/// A host-level guard for database access from CI runners and AI agents.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: attach the eBPF programs to the watched cgroups and
    /// serve redirected connections.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/interceptor/interceptor.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and exit (0 when valid).
    CheckConfig {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/interceptor/interceptor.toml")]
        config: PathBuf,
    },
    /// Policy tools: check a set, explain a decision, run the set's test cases.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit log: verify it, print its public key, export it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Recorded sessions: list them, show one.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Play a recorded session back as it happened.
    Replay {
        /// Session id (from `sessions list`).
        id: String,
        /// Playback speed: 2 = twice as fast, 0 = no waiting.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Audit directory.
        #[arg(long, default_value = audit::cli::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Host-issued tokens for pipeline runs (talks to the running daemon
    /// over its admin socket; root only).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        /// The daemon's admin socket (default: the config's [admin] socket).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        /// The daemon's configuration, to find its admin socket.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Statements held for approval: list, show, approve, deny (talks to
    /// the running daemon over its admin socket; root only).
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
        /// The daemon's admin socket (default: the config's [admin] socket).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        /// The daemon's configuration, to find its admin socket.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Print the daemon's JSON answer instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Detach the programs and remove the pinned state. While pinned, a
    /// watched connect to a database port is refused if the daemon is down;
    /// after this, watched processes reach databases directly again.
    Uninstall {
        /// bpffs directory of the pins (default: the config's, else
        /// /sys/fs/bpf/interceptor).
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Configuration file to take the pin directory from.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// How the running daemon is: programs attached per cgroup, pins,
    /// targets, policy, audit, approvals. Exit 0 healthy, 1 degraded, 3
    /// down but failing closed (programs pinned), 4 down and nothing pinned.
    Status {
        /// Configuration file (admin socket, pin directory).
        #[arg(long, short, default_value = "/etc/interceptor/interceptor.toml")]
        config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a token bound to a policy identity; prints the token on stdout
    /// and its id on stderr.
    Issue {
        /// The policy identity the token is for.
        #[arg(long)]
        identity: String,
        /// How long it is valid (`15m`, `1h`); at most `[token] max_ttl`.
        #[arg(long)]
        ttl: String,
        /// Extra claim `name=value` (repeatable), usable as a policy selector.
        #[arg(long = "claim", value_name = "K=V")]
        claims: Vec<String>,
        /// Print `{token, id, identity, issuer, expires_at}` as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id before it expires.
    Revoke {
        /// Token id (`tok_...`, printed by `token issue`).
        id: String,
        /// Also accept the `jti` of a token this host did not issue.
        #[arg(long)]
        any_issuer: bool,
    },
    /// Unexpired host-issued tokens (ids, identity, expiry, revoked); never the tokens.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Pending requests (with --all: decided ones of this run too).
    List {
        /// Also requests already decided, expired or withdrawn.
        #[arg(long)]
        all: bool,
    },
    /// One request in full.
    Show {
        /// Request id (apr-...).
        id: String,
    },
    /// Approve a request (recorded as made by `root@<host>`, or
    /// `[approvals] cli_approver`).
    Approve {
        /// Request id (apr-...).
        id: String,
        /// once (default) | session | identity:MINUTES, within what the rule allows.
        #[arg(long, default_value = "once")]
        scope: String,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a request; the held client gets the reason.
    Deny {
        /// Request id (apr-...).
        id: String,
        /// Why (required; the client is told).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every hash and signature; exit 0 when intact, else name the
    /// first bad record (10 modified, 11 removed, 12 reordered, 13 truncated,
    /// 14 bad signature).
    Verify {
        /// Audit directory.
        #[arg(default_value = audit::cli::DEFAULT_DIR)]
        dir: PathBuf,
        /// The host's public key kept elsewhere (PEM); without it the key in
        /// the directory is trusted, which a forger could have replaced.
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// The `[audit] witness` file kept outside the log: the log must
        /// still hold the checkpoint it names (detects a log cut back or
        /// restored from an older copy).
        #[arg(long)]
        witness: Option<PathBuf>,
        /// SEQ or SEQ:HASH the log must reach (a checkpoint shipped off the host).
        #[arg(long, value_name = "SEQ[:HASH]")]
        expect_at_least: Option<String>,
    },
    /// Print the host's public key (PEM) and its fingerprint.
    Pubkey {
        /// Audit directory.
        #[arg(default_value = audit::cli::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Write every record as one JSON object per line (for a SIEM).
    Export {
        /// Audit directory.
        #[arg(default_value = audit::cli::DEFAULT_DIR)]
        dir: PathBuf,
        /// Output format.
        #[arg(long, default_value = "jsonl")]
        format: audit::ExportFormat,
        /// Only records after this seq (incremental shipping).
        #[arg(long)]
        after: Option<u64>,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// One line per recorded session.
    List {
        /// Audit directory.
        #[arg(long, default_value = audit::cli::DEFAULT_DIR)]
        dir: PathBuf,
        /// Started at or after: RFC 3339 time or a duration ago (`1h`, `2d`).
        #[arg(long, value_parser = audit::parse_since)]
        since: Option<std::time::SystemTime>,
        /// Policy identity, executable path or executable name.
        #[arg(long)]
        identity: Option<String>,
        /// Host name.
        #[arg(long)]
        host: Option<String>,
        /// Sessions with a statement decided so: allow, deny or approve.
        #[arg(long)]
        decision: Option<String>,
    },
    /// Every record of one session, in order.
    Show {
        /// Session id.
        id: String,
        /// Audit directory.
        #[arg(long, default_value = audit::cli::DEFAULT_DIR)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy set; mistakes are printed as file:line: message (fix: ...).
    Check {
        /// Directory of policy files.
        #[arg(default_value = "/etc/interceptor/policies")]
        dir: PathBuf,
    },
    /// Print the decision for one SQL text as JSON.
    Explain {
        /// Directory of policy files.
        #[arg(long, default_value = "/etc/interceptor/policies")]
        dir: PathBuf,
        /// An identity name, or a JSON attestation (e.g. '{"exe":"/usr/bin/psql","uid":1000}').
        #[arg(long)]
        identity: String,
        /// Target name.
        #[arg(long, default_value = "default")]
        target: String,
        /// Database name.
        #[arg(long, default_value = "default")]
        database: String,
        /// The SQL.
        #[arg(long)]
        sql: String,
    },
    /// Run the test cases in DIR/tests/*.toml against the set in DIR.
    Test {
        /// Directory of policy files.
        #[arg(default_value = "/etc/interceptor/policies")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let config_path = config.clone();
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("interceptor: {e}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(config.log.format);
            // Statements are analysed on the session's task; PostgreSQL's
            // parser limits its recursion to the stack it finds, so give the
            // workers room for deep (but legal) SQL.
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(8 << 20)
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("interceptor: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config, config_path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(event = "fatal", error = format!("{e:#}"));
                    eprintln!("interceptor: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} target(s), {} watched cgroup(s), {} token issuer(s))",
                    config.display(),
                    c.targets.len(),
                    c.ebpf.cgroups.len(),
                    c.token.issuers.len()
                );
                for t in &c.targets {
                    println!("{}", interceptor::config::describe_target(t));
                }
                for w in interceptor::config::uncovered_listeners(
                    &c,
                    &interceptor::config::local_listeners(),
                ) {
                    println!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("interceptor: {e}");
                ExitCode::from(2)
            }
        },
        Command::Policy { command } => policy_command(command),
        Command::Audit { command } => {
            let mut out = std::io::stdout().lock();
            ExitCode::from(match command {
                AuditCommand::Verify {
                    dir,
                    pubkey,
                    witness,
                    expect_at_least,
                } => {
                    let expect = match (witness, expect_at_least) {
                        (Some(w), None) => audit::verify::Expect::from_witness(&w).map(Some),
                        (None, Some(e)) => audit::verify::Expect::parse(&e).map(Some),
                        (None, None) => Ok(None),
                        (Some(_), Some(_)) => {
                            Err("give --witness or --expect-at-least, not both".to_owned())
                        }
                    };
                    match expect {
                        Ok(e) => {
                            audit::cli::audit_verify(&dir, pubkey.as_deref(), e.as_ref(), &mut out)
                        }
                        Err(e) => {
                            eprintln!("interceptor: {e}");
                            2
                        }
                    }
                }
                AuditCommand::Pubkey { dir } => audit::cli::audit_pubkey(&dir, &mut out),
                AuditCommand::Export { dir, format, after } => {
                    audit::cli::audit_export(&dir, format, after, &mut out)
                }
            })
        }
        Command::Sessions { command } => {
            let mut out = std::io::stdout().lock();
            ExitCode::from(match command {
                SessionsCommand::List {
                    dir,
                    since,
                    identity,
                    host,
                    decision,
                } => {
                    let filter = audit::SessionFilter {
                        since,
                        identity,
                        host,
                        decision,
                    };
                    audit::cli::sessions_list(&dir, &filter, &mut out)
                }
                SessionsCommand::Show { id, dir } => audit::cli::sessions_show(&dir, &id, &mut out),
            })
        }
        Command::Replay { id, speed, dir } => {
            let mut out = std::io::stdout().lock();
            ExitCode::from(audit::cli::replay(&dir, &id, speed, &mut out))
        }
        Command::Token {
            command,
            socket,
            config,
        } => token_command(command, socket, config),
        Command::Approvals {
            command,
            socket,
            config,
            json,
        } => approvals_command(command, socket, config, json),
        Command::Status { config, json } => status_command(&config, json),
        Command::Uninstall { pin_dir, config } => {
            let pin_dir = match (pin_dir, config) {
                (Some(p), _) => p,
                (None, Some(c)) => match Config::load(&c) {
                    Ok(c) => c.ebpf.pin_dir,
                    Err(e) => {
                        eprintln!("interceptor: {e}");
                        return ExitCode::from(2);
                    }
                },
                (None, None) => PathBuf::from(config::DEFAULT_PIN_DIR),
            };
            match ebpf::uninstall(&pin_dir) {
                Ok(()) => {
                    println!("removed the programs pinned under {}", pin_dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("interceptor: uninstall {}: {e}", pin_dir.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_env("INTERCEPTOR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Json => fmt()
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .init(),
        LogFormat::Text => fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .init(),
    }
}

/// Connect records come from the kernel maps.
struct KernelLookup(Redirector);

impl OrigDstLookup for KernelLookup {
    fn lookup(&self, peer: SocketAddr) -> Option<ConnectRecord> {
        self.0.take(peer)
    }
}

async fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another interceptor or service using that port? set [proxy] listen to a free port)")
    })
}

/// The key of masking's deterministic tokens: `<state_dir>/mask.key`, 32
/// random bytes made on first start (0600), so tokens stay the same across
/// restarts.
fn mask_key(state_dir: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = state_dir.join("mask.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            return bytes.try_into().map_err(|_| {
                anyhow::anyhow!(
                    "{} is not 32 bytes (fix: delete it to make a new key; tokens will change)",
                    path.display()
                )
            });
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(anyhow::anyhow!("cannot read {}: {e}", path.display()));
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let _ = std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700));
    let key: [u8; 32] = rand::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, &key)?;
    f.sync_all()?;
    Ok(key)
}

async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    // Reloads are never lost: SIGHUP is caught from the start (its default
    // would end the daemon), and the policy files' fingerprint is taken
    // before they are read, so an edit made while the daemon starts is
    // seen by the watcher.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let policy_seen = dir_fingerprint(&config.policy.dir);
    // Listen first: once the programs are attached, redirected connects must
    // find the proxy.
    let v4 = bind_tcp(config.proxy.listen).await?;
    let v6 = match config.proxy.listen6 {
        Some(a) => Some(bind_tcp(a).await?),
        None => None,
    };
    let unix = match &config.proxy.unix_socket {
        Some(path) => Some(bind_unix(path)?),
        None => None,
    };
    let policy = Arc::new(PolicyStore::open(&config.policy.dir).map_err(|errors| {
        anyhow::anyhow!(
            "the policy set in {} is broken ({} error(s)):\n{errors}",
            config.policy.dir.display(),
            errors.0.len()
        )
    })?);
    // Recording must work before anything is intercepted: every session
    // and statement is recorded before it reaches the database.
    let audit_config = config.audit.clone();
    let audit = tokio::task::spawn_blocking(move || AuditLog::open(&audit_config))
        .await
        .context("audit log open panicked")?
        .with_context(|| {
            format!(
                "cannot open the audit log in {}",
                config.audit.dir.display()
            )
        })?;
    tracing::info!(event = "audit_open", dir = %audit.dir().display(), host = audit.host(), key = audit.key_fingerprint(), "audit log open");
    // Approvals next: what a previous run left pending is denied on the
    // record before anything new is intercepted.
    let mut factory = PolicyFactory::new(Arc::clone(&policy), audit.clone())
        .with_record_secrets(config.audit.record_secrets);
    let http_stop = tokio_util::sync::CancellationToken::new();
    let broker = match &config.approvals {
        Some(a) => {
            let broker = open_approvals(&config, a, &audit, &http_stop).await?;
            factory = factory.with_approvals(Arc::clone(&broker));
            Some(broker)
        }
        None => None,
    };
    // Tokens: the host's own issuer (key generated on first start) and the
    // validator trusting it and the configured issuers.
    let host_issuer = Arc::new(
        HostIssuer::open(&HostIssuerConfig {
            issuer: config
                .token
                .host_issuer
                .clone()
                .unwrap_or_else(|| format!("interceptor://{}", audit.host())),
            audience: config.token.host_audience.clone(),
            key: config.token_host_key(),
            store: config.token_store(),
            max_ttl: config.token.max_ttl,
        })
        .context("cannot open the host token issuer ([token] host_key / store)")?,
    );
    let validator = Arc::new(
        Validator::new(config.token.issuers.clone())
            .map_err(|e| anyhow::anyhow!(e))?
            .with_host(host_issuer.trust())
            .with_revocations(host_issuer.revocations())
            .with_max_token_bytes(config.token.max_token_bytes),
    );
    // Keys are loaded in the background: an issuer that cannot be reached
    // delays its own tokens, not the daemon's start.
    let prefetch = Arc::clone(&validator);
    tokio::spawn(async move {
        for (issuer, loaded) in prefetch.prefetch().await {
            match loaded {
                Ok(keys) => tracing::info!(
                    event = "token_issuer",
                    issuer,
                    keys,
                    "trusted token issuer ready"
                ),
                Err(error) => tracing::warn!(
                    event = "token_issuer",
                    issuer,
                    error,
                    "token issuer keys not loaded yet; retried on use"
                ),
            }
        }
    });
    // The admin socket: one registration line per feature.
    let admin_handlers = {
        let store = Arc::clone(&policy);
        let host_iss = host_issuer.issuer().to_owned();
        // A host token is only worth issuing for an identity that can be
        // selected by one.
        let identity_check: interceptor::token::admin::IdentityCheck = Arc::new(
            move |name: &str| {
                let set = store.current();
                match set.identities.iter().find(|i| i.spec.name == name) {
                    Some(i)
                        if i.accepts_issuer(interceptor::token::HOST_ISSUER_NAME, &host_iss) =>
                    {
                        Ok(())
                    }
                    Some(_) => Err(format!(
                        "identity `{name}` does not accept host-issued tokens: give it token = \"required\" \
                     (and issuer = [\"host\"] if it lists issuers) in the policy"
                    )),
                    None => Err(format!(
                        "no identity `{name}` in the policy set in force (see `interceptor policy check`)"
                    )),
                }
            },
        );
        let handlers = admin::Handlers::new().register(
            "token.",
            Arc::new(TokenAdmin::new(
                Arc::clone(&host_issuer),
                Some(audit.clone()),
                identity_check,
            )),
        );
        match (&broker, &config.approvals) {
            (Some(b), Some(a)) => handlers.register(
                "approvals.",
                Arc::new(approval::admin::ApprovalsAdmin::new(
                    Arc::clone(b),
                    a,
                    audit.host(),
                )),
            ),
            _ => handlers.register("approvals.", Arc::new(approval::admin::NotEnabled)),
        }
    };
    let status_admin = Arc::new(interceptor::status::StatusAdmin::new(
        std::fs::canonicalize(&config_path).unwrap_or(config_path),
        Arc::new(config.clone()),
        Arc::clone(&policy),
        audit.clone(),
        broker.clone(),
    ));
    let admin_handlers = Arc::new(admin_handlers.register("status.", status_admin));
    let admin_listener = admin::bind(&config.admin.socket).with_context(|| {
        format!(
            "cannot listen on the admin socket {} ([admin] socket)",
            config.admin.socket.display()
        )
    })?;
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_handlers,
        admin_stop.clone().cancelled_owned(),
    ));
    let redirector = Redirector::start(&config).context("cannot set up the eBPF redirect")?;
    let config = Arc::new(config);
    tokio::spawn(reload_policy(
        Arc::clone(&policy),
        config.policy.watch_secs,
        hup,
        policy_seen,
    ));
    tracing::info!(
        event = "ready",
        listen = %config.proxy.listen,
        listen6 = config.proxy.listen6.map(|a| a.to_string()),
        unix_socket = config.proxy.unix_socket.as_ref().map(|p| p.display().to_string()),
        cgroups = ?config.ebpf.cgroups,
        pin_dir = %config.ebpf.pin_dir.display(),
        targets = ?config.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        "interceptor is ready"
    );
    let listeners = Listeners { v4, v6, unix };
    let connector = proxy::UpstreamConnector::new(Arc::clone(&config))
        .context("cannot load the upstream credentials")?;
    let mask_key = mask_key(&config.state_dir).context("cannot set up the masking key")?;
    let catalogs = Arc::new(interceptor::mask::catalog::CatalogPool::new(
        Arc::new(connector),
        &config.catalog,
    ));
    let hooks = Arc::new(
        factory
            .with_masking(catalogs, mask_key)
            .with_tokens(validator),
    );
    let stopping = {
        let broker = broker.clone();
        async move {
            shutdown_signal().await;
            if let Some(b) = broker {
                // Held statements are denied on the record, and their clients
                // get the error before the sessions are closed.
                b.shutdown();
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    };
    let served = proxy::run_with_hooks(
        config.clone(),
        listeners,
        Arc::new(KernelLookup(redirector)),
        hooks,
        stopping,
    )
    .await;
    http_stop.cancel();
    admin_stop.cancel();
    let _ = admin_task.await;
    let _ = std::fs::remove_file(&config.admin.socket);
    if let Err(e) = audit.close("shutdown").await {
        tracing::error!(event = "audit_error", error = %e, "the audit log could not be closed cleanly");
    }
    served.context("proxy stopped")?;
    // The pinned programs stay attached: until the daemon is back, watched
    // connects to database ports are refused rather than let through.
    tracing::info!(
        event = "stopped",
        "interceptor stopped; redirect stays pinned (fail closed)"
    );
    Ok(())
}

/// Opens the approval broker (denying on the record what the previous run
/// left pending) and starts the approvers' HTTP API.
async fn open_approvals(
    config: &Config,
    a: &approval::ApprovalsConfig,
    audit: &AuditLog,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Arc<approval::Broker>> {
    let state_file = a
        .state_file
        .clone()
        .unwrap_or_else(|| config.state_dir.join("approvals.json"));
    let broker = approval::Broker::open(a, state_file, audit.clone())
        .await
        .context("cannot start the approval workflow")?;
    if let Some(addr) = a.http {
        let listener = bind_tcp(addr).await.context("approvals HTTP API")?;
        let auth = Arc::new(
            approval::http::Authenticator::new(&a.approvers, a.oidc.as_ref())
                .map_err(|e| anyhow::anyhow!("[approvals.oidc]: {e}"))?,
        );
        tokio::spawn(approval::http::serve(
            listener,
            Arc::clone(&broker),
            auth,
            stop.clone(),
        ));
        tracing::info!(event = "approvals_http", listen = %addr, "approvals HTTP API listening");
        if !addr.ip().is_loopback() {
            tracing::warn!(
                event = "approvals_http_exposed",
                listen = %addr,
                "the approvals HTTP API is plain HTTP on a non-loopback address: bearer tokens cross the network in clear; put it behind a TLS-terminating proxy"
            );
        }
    }
    Ok(broker)
}

fn bind_unix(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // A socket file left by a previous run would make bind fail with EADDRINUSE.
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let l =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Watched processes run as any user: the socket must be connectable by all;
    // who may do what is decided by attestation, not by file modes.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(l)
}

/// Swaps in a new policy set on SIGHUP or when a file in the directory
/// changes; a broken set is logged with its errors and the old one stays.
/// `seen`: the files as they were before the running set was read.
async fn reload_policy(
    store: Arc<PolicyStore>,
    watch_secs: u64,
    mut hup: tokio::signal::unix::Signal,
    mut seen: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
) {
    let period = std::time::Duration::from_secs(watch_secs.max(1));
    loop {
        let trigger = tokio::select! {
            _ = hup.recv() => "sighup",
            () = tokio::time::sleep(period), if watch_secs > 0 => {
                let now = dir_fingerprint(store.dir());
                if now == seen { continue; }
                seen = now;
                "file-change"
            }
        };
        let store2 = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store2.reload()).await {
            Ok(Ok(())) => {
                let set = store.current();
                tracing::info!(
                    event = "policy_reloaded",
                    trigger,
                    identities = set.identities.len(),
                    rules = set.rules.len(),
                    "policy set swapped in"
                );
            }
            Ok(Err(errors)) => tracing::error!(
                event = "policy_rejected",
                trigger,
                errors = %errors,
                "new policy set is broken; the previous set stays in force"
            ),
            Err(e) => tracing::error!(event = "policy_rejected", trigger, error = %e),
        }
    }
}

/// Names, sizes and modification times of the policy files: cheap to
/// compare, changes with any edit, addition or removal.
fn dir_fingerprint(dir: &std::path::Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    v.sort();
    v
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(event = "shutdown", "signal received, stopping");
}

fn policy_command(command: PolicyCommand) -> ExitCode {
    use interceptor::policy::{self, Subject, cases};
    let load = |dir: &std::path::Path| match policy::load_dir(dir) {
        Ok(set) => Some(set),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "policy set {} rejected: {} error(s)",
                dir.display(),
                errors.0.len()
            );
            None
        }
    };
    match command {
        PolicyCommand::Check { dir } => match load(&dir) {
            Some(set) => {
                println!(
                    "{}: ok ({} identities, {} rules)",
                    dir.display(),
                    set.identities.len(),
                    set.rules.len()
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        PolicyCommand::Explain {
            dir,
            identity,
            target,
            database,
            sql,
        } => {
            let Some(set) = load(&dir) else {
                return ExitCode::from(2);
            };
            let resolved = if identity.trim_start().starts_with('{') {
                match serde_json::from_str::<Subject>(&identity) {
                    Ok(subject) => cases::resolve_identity(&set, None, Some(&subject)),
                    Err(e) => {
                        eprintln!("interceptor: --identity is not a valid attestation: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                Some(identity.clone())
            };
            let analysis = interceptor::sql::analyze(&sql, &interceptor::sql::Limits::default());
            let decision = resolved.as_deref().map(|i| {
                set.decide(
                    &policy::Context {
                        identity: i,
                        target: &target,
                        database: &database,
                    },
                    &analysis,
                )
            });
            let out = serde_json::json!({
                "identity": resolved,
                "action": decision.as_ref().map_or("deny", |d| match d.action {
                    policy::Action::Allow => "allow",
                    policy::Action::Deny => "deny",
                    policy::Action::Approve => "approve",
                }),
                "rule": decision.as_ref().map_or("no-identity", |d| d.rule.as_str()),
                "reason": decision.as_ref().map_or_else(
                    || "the attestation matches no identity and the policy has no default identity".to_owned(),
                    |d| d.reason.clone()),
                "max_rows": decision.as_ref().and_then(|d| d.max_rows),
                "statements": analysis.as_ref().ok().map(|a| &a.statements),
                "analysis_error": analysis.as_ref().err().map(ToString::to_string),
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            ExitCode::SUCCESS
        }
        PolicyCommand::Test { dir } => {
            let Some(set) = load(&dir) else {
                return ExitCode::from(2);
            };
            let outcomes = match cases::run_dir(&set, &dir) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("interceptor: {e}");
                    return ExitCode::from(2);
                }
            };
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            for o in &outcomes {
                let got = o.decision.as_ref().map_or_else(
                    || "deny (no identity)".to_owned(),
                    |d| format!("{:?} by {}", d.action, d.rule).to_lowercase(),
                );
                let label = o
                    .case
                    .name
                    .clone()
                    .unwrap_or_else(|| o.case.sql.chars().take(60).collect());
                if o.passed {
                    println!("ok    {}  {label}  -> {got}", o.at);
                } else {
                    println!(
                        "FAIL  {}  {label}  -> {got}; expected {:?}{}",
                        o.at,
                        o.case.expect,
                        o.case
                            .rule
                            .as_ref()
                            .map(|r| format!(" by {r}"))
                            .unwrap_or_default()
                    );
                    if let Some(d) = &o.decision {
                        println!("      reason: {}", d.reason);
                    }
                }
            }
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            if failed == 0 && !outcomes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The admin socket: `--socket`, else the config's (`--config`, else the
/// default config file when it exists), else the default path.
fn admin_socket(socket: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(s) = socket {
        return Ok(s);
    }
    let path = config.unwrap_or_else(|| PathBuf::from("/etc/interceptor/interceptor.toml"));
    match Config::load(&path) {
        Ok(c) => Ok(c.admin.socket),
        Err(_) if !path.exists() => Ok(PathBuf::from(admin::DEFAULT_SOCKET)),
        Err(e) => Err(e.to_string()),
    }
}

fn token_command(
    command: TokenCommand,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
) -> ExitCode {
    let socket = match admin_socket(socket, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::from(2);
        }
    };
    let (op, params) = match &command {
        TokenCommand::Issue {
            identity,
            ttl,
            claims,
            ..
        } => {
            let mut map = serde_json::Map::new();
            for c in claims {
                let Some((k, v)) = c.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                    eprintln!("interceptor: --claim `{c}` is not name=value");
                    return ExitCode::from(2);
                };
                map.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            (
                "token.issue",
                serde_json::json!({ "identity": identity, "ttl": ttl, "claims": map }),
            )
        }
        TokenCommand::Revoke { id, any_issuer } => (
            "token.revoke",
            serde_json::json!({ "id": id, "any_issuer": any_issuer }),
        ),
        TokenCommand::List { .. } => ("token.list", serde_json::json!({})),
    };
    let result = match admin::client::call(&socket, op, params) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let when = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .map(|s| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                )
                .to_string()
            })
            .unwrap_or_default()
    };
    match command {
        TokenCommand::Issue { json: true, .. } | TokenCommand::List { json: true } => {
            println!("{result}")
        }
        TokenCommand::Issue { .. } => {
            println!("{}", text(&result, "token"));
            eprintln!(
                "issued token {} for identity {} (expires {}); revoke with: interceptor token revoke {}",
                text(&result, "id"),
                text(&result, "identity"),
                when(&result, "expires_at"),
                text(&result, "id")
            );
        }
        TokenCommand::Revoke { id, .. } => {
            let again = result
                .get("newly_revoked")
                .and_then(serde_json::Value::as_bool)
                == Some(false);
            println!(
                "{}token {id}",
                if again {
                    "already revoked: "
                } else {
                    "revoked "
                }
            );
        }
        TokenCommand::List { .. } => {
            let tokens = result
                .get("tokens")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for t in &tokens {
                println!(
                    "{}  {}  expires {}{}",
                    text(t, "id"),
                    text(t, "identity"),
                    when(t, "expires_at"),
                    if t.get("revoked").and_then(serde_json::Value::as_bool) == Some(true) {
                        "  revoked"
                    } else {
                        ""
                    }
                );
            }
            if tokens.is_empty() {
                println!("no unexpired host-issued tokens");
            }
        }
    }
    ExitCode::SUCCESS
}

fn approvals_command(
    command: ApprovalsCommand,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let socket = match admin_socket(socket, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::from(2);
        }
    };
    let (op, params) = match &command {
        ApprovalsCommand::List { all } => ("approvals.list", serde_json::json!({ "all": all })),
        ApprovalsCommand::Show { id } => ("approvals.show", serde_json::json!({ "id": id })),
        ApprovalsCommand::Approve { id, scope, reason } => (
            "approvals.approve",
            serde_json::json!({ "id": id, "scope": scope, "reason": reason }),
        ),
        ApprovalsCommand::Deny { id, reason } => (
            "approvals.deny",
            serde_json::json!({ "id": id, "reason": reason }),
        ),
    };
    let result = match admin::client::call(&socket, op, params) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{result}");
        return ExitCode::SUCCESS;
    }
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let state = |v: &serde_json::Value| {
        v.get("status")
            .map(|s| text(s, "state"))
            .unwrap_or_default()
    };
    let line = |r: &serde_json::Value| {
        let have = r
            .get("approvals")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        let need = r
            .get("approvers_required")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        format!(
            "{}  {:<9}  {have}/{need}  {}  {}@{}/{}  rule {}  expires {}  {}",
            text(r, "id"),
            state(r),
            text(r, "mode"),
            text(r, "identity"),
            text(r, "target"),
            text(r, "database"),
            text(r, "rule"),
            text(r, "expires_at"),
            one_line(&text(r, "sql"), 80)
        )
    };
    match command {
        ApprovalsCommand::List { .. } => {
            let list = result
                .get("requests")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for r in &list {
                println!("{}", line(r));
            }
            if list.is_empty() {
                println!("no pending approval requests");
            }
        }
        ApprovalsCommand::Show { .. } => match serde_json::to_string_pretty(&result) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("interceptor: {e}"),
        },
        ApprovalsCommand::Approve { id, .. } => {
            let approvals = result
                .get("approvals")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            let needed = result
                .get("approvers_required")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            if state(&result) == "approved" {
                println!("approved {id}");
            } else {
                println!(
                    "approval recorded for {id}: {approvals} of {needed} approvers; still {}",
                    state(&result)
                );
            }
        }
        ApprovalsCommand::Deny { id, .. } => println!("denied {id}"),
    }
    ExitCode::SUCCESS
}

/// `text` on one line (control characters shown as spaces), cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// `interceptor status`.
fn status_command(config: &std::path::Path, json_out: bool) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("interceptor: {e}");
            return ExitCode::from(2);
        }
    };
    match admin::client::call(&config.admin.socket, "status.get", serde_json::json!({})) {
        Ok(report) => {
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", interceptor::status::render(&report));
            }
            if report["health"] == "healthy" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            let pins = interceptor::status::pins(&config.ebpf.pin_dir);
            let links = pins.iter().filter(|p| p.starts_with("link-")).count();
            let (state, code) = if links > 0 {
                (
                    format!(
                        "down, failing closed: {links} program link(s) pinned in {}, so watched connects to targets are refused",
                        config.ebpf.pin_dir.display()
                    ),
                    3,
                )
            } else {
                (
                    format!(
                        "down, and nothing pinned in {}: watched processes reach databases directly",
                        config.ebpf.pin_dir.display()
                    ),
                    4,
                )
            };
            if json_out {
                println!(
                    "{}",
                    serde_json::json!({ "health": "down", "failing_closed": links > 0, "pins": pins, "error": e.to_string(), "state": state })
                );
            } else {
                println!("interceptor: {state} ({e})");
            }
            ExitCode::from(code)
        }
    }
}
