//! `sockops`: publish a redirected socket's record under the key the proxy
//! knows, the client's local address (the accepted socket's peer address).
//! The socket cookie cannot be that key: the accepted socket has its own.
//!
//! `BPF_SOCK_OPS_TCP_CONNECT_CB` fires for every active open without any
//! callback flag (`tcp_connect()`), after the local port is chosen and before
//! the SYN leaves, so the entry exists before the proxy can accept. The state
//! callback is then enabled for that socket only, to delete its entry when it
//! closes: a stale entry must not be taken by a later connection that reuses
//! the address and port.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_TCP_CLOSE,
    },
    helpers::generated::{bpf_get_socket_cookie, bpf_sk_storage_get},
    programs::SockOpsContext,
};
use interceptor_common::{ClientKey, SockRecord};

use crate::{
    addr,
    maps::{CLIENTS, SOCKS},
};

/// sock_ops return value (ignored by the kernel for these callbacks).
const OK: i32 = 1;

pub(crate) fn try_sockops(ctx: &SockOpsContext) -> Result<i32, i32> {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => on_connect(ctx),
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == BPF_TCP_CLOSE => on_close(ctx),
        _ => Ok(OK),
    }
}

fn client_key(ctx: &SockOpsContext) -> ClientKey {
    let (addr, port) = addr::ops_local(ctx.ops);
    ClientKey { addr, port, pad: 0 }
}

fn cookie(ctx: &SockOpsContext) -> u64 {
    // SAFETY: the sock_ops variant of the helper takes the context pointer.
    unsafe { bpf_get_socket_cookie(ctx.ops.cast()) }
}

fn on_connect(ctx: &SockOpsContext) -> Result<i32, i32> {
    // SAFETY: reading the `sk` field of the context the kernel passed us.
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    if sk.is_null() {
        return Ok(OK);
    }
    // SAFETY: `SOCKS` is the storage map (the loader relocates its address to
    // the map), `sk` a non-null socket, no value and no flags: lookup only.
    let rec = unsafe {
        bpf_sk_storage_get(
            ptr::from_ref(&SOCKS).cast_mut().cast::<c_void>(),
            sk.cast(),
            ptr::null_mut(),
            0,
        )
    }
    .cast::<SockRecord>();
    if rec.is_null() {
        // Not a redirected socket.
        return Ok(OK);
    }
    // SAFETY: non-null pointer to this socket's storage value.
    let mut rec = unsafe { *rec };
    rec.cookie = cookie(ctx);
    // If this fails the proxy finds no record and refuses the connection.
    let _ = CLIENTS.insert(client_key(ctx), rec, 0);
    let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    Ok(OK)
}

fn on_close(ctx: &SockOpsContext) -> Result<i32, i32> {
    let key = client_key(ctx);
    // SAFETY: the value is copied out at once.
    let owner = unsafe { CLIENTS.get(key) }.map(|r| r.cookie);
    if owner == Some(cookie(ctx)) {
        let _ = CLIENTS.remove(key);
    }
    Ok(OK)
}
