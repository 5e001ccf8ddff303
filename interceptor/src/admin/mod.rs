//! The admin socket: a root-only unix socket through which the CLI talks
//! to the running daemon (`interceptor token issue`, `token revoke`, ...).
//!
//! Protocol: the client sends one JSON object on one line,
//! `{"op":"token.issue", ...}`, and reads one line back:
//! `{"ok":true,"result":{...}}` or `{"ok":false,"error":"..."}`. Then the
//! connection closes.
//!
//! Operations are served by [`AdminHandler`]s registered by op prefix
//! (`"token."`, `"approvals."`): a feature adds its operations with one
//! [`Handlers::register`] call where the daemon starts. `ping` is built in.
//!
//! The socket file is mode 0600 and every accepted connection's
//! `SO_PEERCRED` uid must be 0; anything else is answered with an error
//! and closed.
//!
//! Adding operations:
//!
//! ```no_run
//! use std::sync::Arc;
//! use interceptor::admin::{AdminHandler, HandlerFuture, Handlers, Peer, client};
//! use serde_json::{Value, json};
//!
//! struct Approvals;
//!
//! impl AdminHandler for Approvals {
//!     fn handle<'a>(&'a self, op: &'a str, request: Value, peer: Peer) -> HandlerFuture<'a> {
//!         Box::pin(async move {
//!             match op {
//!                 "approvals.list" => Ok(json!({ "pending": [], "asked_by": peer.to_string() })),
//!                 _ => Err(format!("unknown operation `{op}`")),
//!             }
//!         })
//!     }
//! }
//!
//! // In the daemon (main.rs), beside the token handler:
//! let handlers = Handlers::new().register("approvals.", Arc::new(Approvals));
//! // In a CLI subcommand (blocking):
//! let result = client::call("/run/interceptor/admin.sock".as_ref(), "approvals.list", json!({}));
//! ```

pub mod client;
pub mod server;

use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc};

use serde::Deserialize;
use serde_json::Value;

pub use server::{bind, serve};

/// Default admin socket.
pub const DEFAULT_SOCKET: &str = "/run/interceptor/admin.sock";

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The socket path (root-only, 0600).
    pub socket: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
        }
    }
}

/// Who is on the other end of an admin connection (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// User id (always 0 once accepted).
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id, when the kernel gives one.
    pub pid: Option<i32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid={}", self.uid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid={pid}")?;
        }
        Ok(())
    }
}

/// What a handler returns: the `result` object, or the `error` text.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// Serves the operations under one prefix.
pub trait AdminHandler: Send + Sync + 'static {
    /// Handles `op` (the full name, e.g. `token.issue`); `request` is the
    /// whole request object (with `op`). Errors are shown to the operator as
    /// they are: say what is wrong and what to do, and never include secrets.
    fn handle<'a>(&'a self, op: &'a str, request: Value, peer: Peer) -> HandlerFuture<'a>;
}

/// The registered handlers, by op prefix.
#[derive(Default, Clone)]
pub struct Handlers {
    entries: Vec<(String, Arc<dyn AdminHandler>)>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(p, _)| p))
            .finish()
    }
}

impl Handlers {
    /// No handlers (only `ping`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves every op starting with `prefix` (e.g. `"approvals."`) with
    /// `handler`; the longest matching prefix wins.
    ///
    /// # Panics
    /// When `prefix` is empty or already registered (a programming error).
    #[must_use]
    pub fn register(mut self, prefix: &str, handler: Arc<dyn AdminHandler>) -> Self {
        assert!(!prefix.is_empty(), "admin handler prefix must not be empty");
        assert!(
            self.entries.iter().all(|(p, _)| p != prefix),
            "admin prefix {prefix} registered twice"
        );
        self.entries.push((prefix.to_owned(), handler));
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        self
    }

    /// The prefixes served.
    pub fn prefixes(&self) -> Vec<&str> {
        self.entries.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// Dispatches one request.
    pub async fn dispatch(&self, request: Value, peer: Peer) -> Result<Value, String> {
        let Some(op) = request.get("op").and_then(Value::as_str).map(str::to_owned) else {
            return Err("the request has no \"op\" (send {\"op\":\"...\", ...})".into());
        };
        if op == "ping" {
            return Ok(
                serde_json::json!({ "pong": true, "version": env!("CARGO_PKG_VERSION"), "prefixes": self.prefixes() }),
            );
        }
        let Some((_, handler)) = self
            .entries
            .iter()
            .find(|(p, _)| op.starts_with(p.as_str()))
        else {
            return Err(format!(
                "unknown operation `{op}` (this daemon serves: ping, {})",
                self.prefixes().join("*, ") + "*"
            ));
        };
        handler.handle(&op, request, peer).await
    }
}
