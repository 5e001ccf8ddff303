//! Workload attestation of the calling process.
//!
//! CONTRACT (used by `proxy/`; keep these signatures):
//! - `attest(pid: u32) -> Result<Attestation, IdentityError>`
//! - `pid_of_tcp_peer(peer: SocketAddr, local: SocketAddr) -> Option<u32>`
