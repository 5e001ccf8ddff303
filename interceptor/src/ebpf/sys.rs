//! Raw `bpf(2)` calls that aya 0.14 does not expose: loading a program from
//! raw instructions (for `cgroup/connect_unix`, which aya cannot load),
//! creating, updating, pinning and opening links, and querying a cgroup's
//! attachments. This is the only module of `ebpf/` with `unsafe` code.
//!
//! Soundness: every call passes a pointer to a `#[repr(C)]` struct that is
//! the prefix of the kernel's `union bpf_attr` member for that command
//! (layouts from `include/uapi/linux/bpf.h`), zero-initialised including
//! padding (every gap is an explicit field), together with its exact size; the
//! kernel reads at most that many bytes and treats the rest of the union as
//! zero. Pointers inside the attrs point into buffers that outlive the call and
//! whose lengths are passed alongside. Returned descriptors are fresh and owned
//! by us, so wrapping them in `OwnedFd` is sound.

use std::{
    ffi::{CStr, CString},
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use super::insn::Insn;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`.
pub(crate) const PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;

/// The `enum bpf_attach_type` values of the hooks we attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum AttachType {
    /// `BPF_CGROUP_SOCK_OPS`.
    SockOps = 3,
    /// `BPF_CGROUP_INET4_CONNECT`.
    Connect4 = 10,
    /// `BPF_CGROUP_INET6_CONNECT`.
    Connect6 = 11,
    /// `BPF_CGROUP_INET4_GETPEERNAME`.
    GetPeerName4 = 29,
    /// `BPF_CGROUP_INET6_GETPEERNAME`.
    GetPeerName6 = 30,
    /// `BPF_CGROUP_UNIX_CONNECT` (Linux 6.7).
    UnixConnect = 49,
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_OBJ_PIN` / `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    pad: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` (cgroup targets: no extra fields,
/// the trailing union is zero).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    target_btf_id: u32,
    pad: [u32; 7],
}

/// `union bpf_attr` for `BPF_LINK_UPDATE`.
#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// `union bpf_attr` for `BPF_PROG_QUERY`, up to `prog_cnt`.
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: see the module comment; `attr` is a live, exclusive, correctly
    // sized `bpf_attr` prefix for `cmd`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the command returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A failed `BPF_PROG_LOAD`, with the verifier's log.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub(crate) error: io::Error,
    pub(crate) log: String,
}

/// Loads `insns` as a program; on failure loads again with the verifier log on.
pub(crate) fn prog_load(
    prog_type: u32,
    expected_attach_type: AttachType,
    name: &str,
    insns: &[Insn],
    license: &CStr,
) -> Result<OwnedFd, LoadError> {
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: expected_attach_type as u32,
            ..ProgLoadAttr::default()
        };
        // The kernel wants a NUL-terminated name of at most 15 bytes.
        for (dst, src) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *dst = src;
        }
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        sys_bpf(BPF_PROG_LOAD, &mut attr).map(owned_fd)
    };
    attempt(None).map_err(|error| {
        let mut buf = vec![0u8; 4 << 20];
        let _ = attempt(Some(&mut buf));
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        // The end of the log says why; keep it readable.
        let log = String::from_utf8_lossy(&buf[end.saturating_sub(4096)..end]).into_owned();
        LoadError { error, log }
    })
}

/// `BPF_LINK_CREATE` of `prog` on the cgroup `target`.
pub(crate) fn link_create(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: AttachType,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target_fd: fd_u32(target),
        attach_type: attach_type as u32,
        ..LinkCreateAttr::default()
    };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(owned_fd)
}

/// `BPF_LINK_UPDATE`: swap the program of `link` for `prog`, atomically (the
/// hook never runs without a program in between).
pub(crate) fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = LinkUpdateAttr {
        link_fd: fd_u32(link),
        new_prog_fd: fd_u32(prog),
        ..LinkUpdateAttr::default()
    };
    sys_bpf(BPF_LINK_UPDATE, &mut attr).map(drop)
}

/// `union bpf_attr` for `BPF_LINK_DETACH`.
#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// `BPF_LINK_DETACH`: detach now. Removing a pin only drops a reference and
/// the kernel releases the link later (deferred work), so `uninstall` detaches
/// explicitly to be done when it returns.
pub(crate) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = LinkDetachAttr {
        link_fd: fd_u32(link),
    };
    sys_bpf(BPF_LINK_DETACH, &mut attr).map(drop)
}

/// `BPF_OBJ_PIN`.
pub(crate) fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd_u32(fd),
        ..ObjAttr::default()
    };
    sys_bpf(BPF_OBJ_PIN, &mut attr).map(drop)
}

/// `BPF_OBJ_GET`.
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        ..ObjAttr::default()
    };
    sys_bpf(BPF_OBJ_GET, &mut attr).map(owned_fd)
}

/// Number of programs attached (directly, not inherited) to the cgroup
/// `target` at `attach_type`.
pub(crate) fn prog_query_count(target: BorrowedFd<'_>, attach_type: AttachType) -> io::Result<u32> {
    let mut attr = ProgQueryAttr {
        target_fd: fd_u32(target),
        attach_type: attach_type as u32,
        ..ProgQueryAttr::default()
    };
    sys_bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(attr.prog_cnt)
}
