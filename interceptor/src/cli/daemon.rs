//! `interceptor run`: the daemon's start-up, policy reload and shutdown.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use interceptor::{
    admin, approval,
    audit::AuditLog,
    config::{Config, LogFormat},
    ebpf::{ConnectRecord, Redirector},
    policy::{PolicyStore, session::PolicyFactory},
    proxy::{self, Listeners, OrigDstLookup},
    token::{HostIssuer, HostIssuerConfig, Validator, admin::TokenAdmin},
};
use tokio::net::{TcpListener, UnixListener};

pub(crate) fn init_tracing(format: LogFormat) {
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

pub(crate) async fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another interceptor or service using that port? set [proxy] listen to a free port)")
    })
}

/// The key of masking's deterministic tokens: `<state_dir>/mask.key`, 32
/// random bytes made on first start (0600), so tokens stay the same across
/// restarts.
pub(crate) fn mask_key(state_dir: &std::path::Path) -> anyhow::Result<[u8; 32]> {
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

pub(crate) async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
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
    let admin_handlers = Arc::new(admin_handlers.register(
        "status.",
        Arc::clone(&status_admin) as Arc<dyn admin::AdminHandler>,
    ));
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = config.metrics.listen {
        let listener = bind_tcp(addr).await.context("[metrics] listen")?;
        tokio::spawn(interceptor::metrics::serve(
            listener,
            audit.clone(),
            Arc::clone(&status_admin),
            metrics_stop.clone(),
        ));
        tracing::info!(event = "metrics_listen", listen = %addr, "metrics, /healthz and /readyz listening");
        if !addr.ip().is_loopback() {
            tracing::warn!(event = "metrics_exposed", listen = %addr, "the metrics endpoint is plain HTTP on a non-loopback address");
        }
    }
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
    metrics_stop.cancel();
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
pub(crate) async fn open_approvals(
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

pub(crate) fn bind_unix(path: &std::path::Path) -> anyhow::Result<UnixListener> {
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
pub(crate) async fn reload_policy(
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
                interceptor::metrics::policy_reload(true);
                interceptor::status::record_reload(trigger, None);
                let set = store.current();
                tracing::info!(
                    event = "policy_reloaded",
                    trigger,
                    identities = set.identities.len(),
                    rules = set.rules.len(),
                    "policy set swapped in"
                );
            }
            Ok(Err(errors)) => {
                interceptor::metrics::policy_reload(false);
                interceptor::status::record_reload(trigger, Some(errors.to_string()));
                tracing::error!(
                event = "policy_rejected",
                trigger,
                errors = %errors,
                "new policy set is broken; the previous set stays in force"
                );
            }
            Err(e) => {
                interceptor::metrics::policy_reload(false);
                tracing::error!(event = "policy_rejected", trigger, error = %e);
            }
        }
    }
}

/// Names, sizes and modification times of the policy files: cheap to
/// compare, changes with any edit, addition or removal.
pub(crate) fn dir_fingerprint(
    dir: &std::path::Path,
) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
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

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(event = "shutdown", "signal received, stopping");
}
