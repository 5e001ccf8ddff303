//! The proxy: listeners, sessions, upstream connections.
//!
//! CONTRACT (used by `main.rs` and tests; keep these signatures):
//! - `pub struct Listeners { pub v4: TcpListener, pub v6: Option<TcpListener>, pub unix: Option<UnixListener> }`
//! - `pub trait OrigDstLookup: Send + Sync + 'static { fn lookup(&self, peer: SocketAddr) -> Option<ConnectRecord>; }`
//! - `pub async fn run(config: Arc<Config>, listeners: Listeners, lookup: Arc<dyn OrigDstLookup>, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError>`
