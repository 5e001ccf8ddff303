//! `cgroup/getpeername4` and `cgroup/getpeername6`: a redirected client sees
//! the peer it asked for, not the proxy.

use aya_ebpf::programs::SockAddrContext;
use interceptor_common::AF_INET6;

use crate::{ALLOW, addr, maps::SOCKS};

pub(crate) fn try_getpeername4(ctx: &SockAddrContext) -> Result<i32, i32> {
    // SAFETY: the helper gets the socket from the context the kernel passed us.
    let rec = unsafe { SOCKS.get_ptr_mut(ctx) };
    if rec.is_null() {
        return Ok(ALLOW);
    }
    // SAFETY: non-null pointer to this socket's storage value.
    let rec = unsafe { &*rec };
    let a = rec.orig_addr;
    addr::set_user4(ctx.sock_addr, [a[12], a[13], a[14], a[15]], rec.orig_port);
    Ok(ALLOW)
}

pub(crate) fn try_getpeername6(ctx: &SockAddrContext) -> Result<i32, i32> {
    // SAFETY: as above.
    let rec = unsafe { SOCKS.get_ptr_mut(ctx) };
    if rec.is_null() {
        return Ok(ALLOW);
    }
    // SAFETY: as above.
    let rec = unsafe { &*rec };
    if rec.family != AF_INET6 {
        return Ok(ALLOW);
    }
    addr::set_user6(ctx.sock_addr, &rec.orig_addr, rec.orig_port);
    Ok(ALLOW)
}
