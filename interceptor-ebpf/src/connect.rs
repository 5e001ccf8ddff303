//! `cgroup/connect4` and `cgroup/connect6`.
//!
//! A TCP connect whose destination is a target is recorded (original
//! destination + caller) in the socket's storage and rewritten to the proxy
//! listener. If the record cannot be stored the connect is refused: a
//! redirected connection the proxy cannot attribute must not exist.
//!
//! IPv4-mapped destinations on IPv6 sockets (`::ffff:a.b.c.d`) are matched as
//! IPv4 and sent to `::ffff:<proxy v4>`, so they are no way around a v4
//! target. Native IPv6 destinations go to the IPv6 listener, or are refused
//! when none is configured.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id},
    },
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use interceptor_common::{
    AF_INET, AF_INET6, MAX_CGROUP_LEVEL, SETTINGS_HAS_PROXY6, SETTINGS_TASK_MODE, Settings,
    SockRecord, TARGET_KEY_BITS, TARGET_REFUSE, TargetKey,
};

use crate::{
    ALLOW, REFUSE,
    addr::{self, is_mapped, mapped4, words_to_bytes},
    maps::{SETTINGS, SOCKS, TARGETS, WATCHED},
};

/// `SOCK_STREAM`: PostgreSQL only speaks TCP; other socket types pass.
const SOCK_STREAM: u32 = 1;

pub(crate) fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i32> {
    let sa = ctx.sock_addr;
    if addr::sock_type(sa) != SOCK_STREAM {
        return Ok(ALLOW);
    }
    let settings = settings()?;
    let dst = mapped4(addr::user_ip4(sa));
    let port = addr::user_port(sa);
    redirected(ctx, intercepted(settings, &dst, port))?;
    record(ctx, &dst, port, AF_INET)?;
    addr::set_user4(sa, settings.proxy4_addr, settings.proxy4_port);
    Ok(ALLOW)
}

pub(crate) fn try_connect6(ctx: &SockAddrContext) -> Result<i32, i32> {
    let sa = ctx.sock_addr;
    if addr::sock_type(sa) != SOCK_STREAM {
        return Ok(ALLOW);
    }
    let settings = settings()?;
    let words = addr::user_ip6(sa);
    let dst = words_to_bytes(words);
    let port = addr::user_port(sa);
    let mapped = is_mapped(&words);
    // The proxy's own listeners are never redirected (that would loop).
    if !mapped
        && settings.flags & SETTINGS_HAS_PROXY6 != 0
        && dst == settings.proxy6_addr
        && port == settings.proxy6_port
    {
        forget(ctx);
        return Ok(ALLOW);
    }
    redirected(ctx, intercepted(settings, &dst, port))?;
    if mapped {
        record(ctx, &dst, port, AF_INET6)?;
        // A dual-stack socket reaches the v4 listener through ::ffff:<v4>.
        addr::set_user6(
            sa,
            &mapped4(u32::from_ne_bytes(settings.proxy4_addr)),
            settings.proxy4_port,
        );
    } else if settings.flags & SETTINGS_HAS_PROXY6 != 0 {
        record(ctx, &dst, port, AF_INET6)?;
        addr::set_user6(sa, &settings.proxy6_addr, settings.proxy6_port);
    } else {
        forget(ctx);
        return Err(REFUSE);
    }
    Ok(ALLOW)
}

fn settings() -> Result<&'static Settings, i32> {
    // Index 0 of an array map always exists; refusing if it did not is the
    // fail-closed answer.
    SETTINGS.get(0).ok_or(REFUSE)
}

/// `Ok(())` when the connect is to be redirected; else the socket's
/// record is dropped and `Err` holds the verdict to return (pass: allow,
/// refused port: refuse).
#[inline(always)]
fn redirected(ctx: &SockAddrContext, verdict: Verdict) -> Result<(), i32> {
    match verdict {
        Verdict::Redirect => Ok(()),
        Verdict::Pass => {
            forget(ctx);
            Err(ALLOW)
        }
        Verdict::Refuse => {
            forget(ctx);
            Err(REFUSE)
        }
    }
}

/// What happens to a connect.
enum Verdict {
    /// Not ours: the connect goes where it was going.
    Pass,
    /// A target's: to the proxy.
    Redirect,
    /// A refused port's (`[ebpf] refuse_ports`): EPERM.
    Refuse,
}

/// What happens to a connect to `dst`:`port` (v4-mapped/v6 bytes,
/// host-order port) from the current task.
#[inline(always)]
fn intercepted(settings: &Settings, dst: &[u8; 16], port: u16) -> Verdict {
    // The v4 listener, however it is spelled, is never redirected.
    if port == settings.proxy4_port && *dst == mapped4(u32::from_ne_bytes(settings.proxy4_addr)) {
        return Verdict::Pass;
    }
    let key = Key::new(
        TARGET_KEY_BITS,
        TargetKey {
            port: port.to_be_bytes(),
            addr: *dst,
        },
    );
    let Some(&value) = TARGETS.get(&key) else {
        return Verdict::Pass;
    };
    if settings.flags & SETTINGS_TASK_MODE != 0 && !task_watched() {
        return Verdict::Pass;
    }
    if value == TARGET_REFUSE {
        Verdict::Refuse
    } else {
        Verdict::Redirect
    }
}

/// Task mode: whether the current task's cgroup, or one of its ancestors, is
/// watched.
#[inline(always)]
fn task_watched() -> bool {
    // SAFETY (both helpers): no arguments to validate; they read `current`.
    let own = unsafe { bpf_get_current_cgroup_id() };
    if unsafe { WATCHED.get(own) }.is_some() {
        return true;
    }
    let mut level = 1;
    while level <= MAX_CGROUP_LEVEL {
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            // Deeper than the task's own cgroup.
            return false;
        }
        if unsafe { WATCHED.get(id) }.is_some() {
            return true;
        }
        level += 1;
    }
    false
}

/// Stores the original destination and the caller in the socket's storage.
#[inline(always)]
fn record(ctx: &SockAddrContext, dst: &[u8; 16], port: u16, family: u16) -> Result<(), i32> {
    let mut rec = SockRecord::zeroed();
    rec.orig_addr = *dst;
    rec.orig_port = port;
    rec.family = family;
    let pid_tgid = bpf_get_current_pid_tgid();
    rec.pid = pid_tgid as u32;
    rec.tgid = (pid_tgid >> 32) as u32;
    let uid_gid = bpf_get_current_uid_gid();
    rec.uid = uid_gid as u32;
    rec.gid = (uid_gid >> 32) as u32;
    // SAFETY: no arguments; reads `current`.
    rec.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    rec.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // SAFETY: the helper gets the socket from the context the kernel passed us.
    let slot = unsafe { SOCKS.get_or_insert_ptr_mut(ctx, Some(&mut rec)) };
    if slot.is_null() {
        return Err(REFUSE);
    }
    // An earlier connect on the same socket may have left a record: overwrite.
    // SAFETY: non-null pointer to this socket's storage value, sized for it.
    unsafe { *slot = rec };
    Ok(())
}

/// Drops a record an earlier (redirected, failed) connect on this socket left,
/// so that getpeername and sock_ops do not use it for this connection.
#[inline(always)]
fn forget(ctx: &SockAddrContext) {
    let sa: *mut bpf_sock_addr = ctx.sock_addr;
    // SAFETY: `sk` of a sock_addr context is a valid, non-null socket.
    let _ = unsafe { SOCKS.delete((*sa).__bindgen_anon_1.sk) };
}
