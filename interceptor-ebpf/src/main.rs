//! Kernel side of interceptor: transparent interception of PostgreSQL TCP
//! connections from watched cgroups.
//!
//! # Layout
//!
//! - [`maps`]: the maps shared with the daemon (settings, targets, watched
//!   cgroups, per-socket records, records by client address).
//! - [`addr`]: reading and writing `bpf_sock_addr` / `bpf_sock_ops` addresses
//!   as 16-byte (v4-mapped) addresses.
//! - [`connect`]: `cgroup/connect4` + `cgroup/connect6`: match the destination
//!   against the targets, record it with the caller in socket storage, rewrite
//!   it to the proxy listener. Fail closed: an unrecorded redirect is refused.
//! - [`sockops`]: on `TCP_CONNECT_CB` copy the socket's record to `CLIENTS`,
//!   keyed by the client's local address (= the peer address the proxy sees);
//!   on close, drop that entry again.
//! - [`getpeername`]: `cgroup/getpeername4/6` give a redirected client back the
//!   address it asked for.
//!
//! `cgroup/connect_unix` is not here: aya 0.14 cannot load it, so the daemon
//! builds it from raw instructions (`interceptor/src/ebpf/unix.rs`).
//!
//! Entry points are thin wrappers around `try_*` functions returning
//! `Result<i32, i32>`, where `Err` carries the verdict to return (the
//! aya-template shape).
#![no_std]
#![no_main]

mod addr;
mod connect;
mod getpeername;
mod maps;
mod sockops;

use aya_ebpf::{
    macros::{cgroup_sock_addr, sock_ops},
    programs::{SockAddrContext, SockOpsContext},
};

/// Verdict of a `cgroup/*` sock_addr program: let the syscall proceed.
pub(crate) const ALLOW: i32 = 1;
/// Verdict of a `cgroup/connect*` program: fail the syscall with `EPERM`.
pub(crate) const REFUSE: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    connect::try_connect4(&ctx).unwrap_or_else(|verdict| verdict)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    connect::try_connect6(&ctx).unwrap_or_else(|verdict| verdict)
}

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    getpeername::try_getpeername4(&ctx).unwrap_or_else(|verdict| verdict)
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    getpeername::try_getpeername6(&ctx).unwrap_or_else(|verdict| verdict)
}

// Not named `sockops`: the symbol would clash with its section name.
#[sock_ops]
pub fn sock_ops(ctx: SockOpsContext) -> u32 {
    sockops::try_sockops(&ctx).unwrap_or_else(|verdict| verdict) as u32
}

// Kernel-facing license string (the aya-template one). GPL-compatible so the
// programs may use GPL-only helpers; the source itself is Apache-2.0.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
