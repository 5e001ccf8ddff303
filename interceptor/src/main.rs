//! The `interceptor` command: the daemon (`run`) and the operator's tools.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use interceptor::{
    audit,
    config::{self, Config},
    ebpf,
};

mod cli;
use cli::{
    admin::{approvals_command, status_command, token_command},
    daemon::{init_tracing, run},
    policy::policy_command,
};

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
