//! `cgroup/connect_unix` (`BPF_CGROUP_UNIX_CONNECT`, Linux 6.7): keeps
//! watched processes off Postgres unix sockets.
//!
//! aya 0.14 cannot load this attach type, so the program is assembled here
//! from raw instructions and loaded with `bpf(BPF_PROG_LOAD)` (see `sys.rs`).
//! Its shape follows the kernel selftest `progs/connect_unix_prog.c`:
//!
//! 1. (task mode) return "allow" unless the calling task's cgroup or one of
//!    its ancestors is in `WATCHED`;
//! 2. `bpf_cast_to_kern_ctx(ctx)` -> `struct bpf_sock_addr_kern *`; read
//!    `uaddrlen` and `uaddr`, `bpf_rdonly_cast(uaddr, struct sockaddr_un)`;
//! 3. search the path bytes actually passed (`uaddrlen`) for `.s.PGSQL.`,
//!    the name libpq and the server give every Postgres socket (abstract
//!    `@` names included);
//! 4. on a match either rewrite the path with `bpf_sock_addr_set_sun_path` to
//!    the proxy's unix socket, or return 0 (the connect fails with `EPERM`).
//!    If the rewrite fails the connect is refused.
//!
//! The kfunc ids and the struct offsets come from `/sys/kernel/btf/vmlinux`.
//!
//! Limitation: the check is on the name the process passes. A symlink or hard
//! link with another name to a Postgres socket, or a socket renamed by the
//! server's owner, is not recognised; file permissions on the socket
//! directory are the defence there.

use std::{ffi::CStr, os::fd::OwnedFd, path::Path};

use interceptor_common::MAX_CGROUP_LEVEL;

use super::{
    EbpfError,
    btf::{Btf, KIND_FUNC, KIND_STRUCT},
    insn::{
        Asm, Cond, Insn, Label, Size,
        reg::{R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10},
    },
    sys::{self, AttachType, PROG_TYPE_CGROUP_SOCK_ADDR},
};

/// What every Postgres socket name contains (`.s.PGSQL.<port>`).
pub(crate) const PG_SOCKET_MARK: &[u8] = b".s.PGSQL.";

/// `sizeof(((struct sockaddr_un *)0)->sun_path)`.
const SUN_PATH_MAX: usize = 108;

/// Helper ids (`enum bpf_func_id`).
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_GET_CURRENT_CGROUP_ID: i32 = 80;
const HELPER_GET_CURRENT_ANCESTOR_CGROUP_ID: i32 = 123;

/// Stack layout: the map key at -8, the rewritten path below it.
const KEY_SLOT: i16 = -8;
const PATH_SLOT: i16 = -8 - 112;

/// What happens to a connect to a Postgres unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnixAction {
    /// `EPERM`.
    Refuse,
    /// Rewrite the path to this one (the proxy's unix socket).
    Redirect(Vec<u8>),
}

/// BTF facts the program depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelIds {
    cast_to_kern_ctx: u32,
    rdonly_cast: u32,
    set_sun_path: u32,
    sockaddr_un: u32,
    /// `offsetof(struct bpf_sock_addr_kern, uaddr)`.
    uaddr_off: i16,
    /// `offsetof(struct bpf_sock_addr_kern, uaddrlen)`.
    uaddrlen_off: i16,
    /// `offsetof(struct sockaddr_un, sun_path)`.
    sun_path_off: i16,
}

impl KernelIds {
    /// Looks the ids up in this kernel's BTF.
    pub(crate) fn from_vmlinux() -> Result<Self, EbpfError> {
        let btf = Btf::vmlinux().map_err(|e| EbpfError::Btf(e.to_string()))?;
        Self::from_btf(&btf)
    }

    fn from_btf(btf: &Btf) -> Result<Self, EbpfError> {
        let need = |what: &str, v: Option<u32>| {
            v.ok_or_else(|| {
                EbpfError::Btf(format!(
                    "`{what}` is missing from the kernel's BTF: connect_unix interception needs Linux 6.7 or later"
                ))
            })
        };
        let func = |name: &str| need(name, btf.find(name, KIND_FUNC));
        let kern = need(
            "struct bpf_sock_addr_kern",
            btf.find("bpf_sock_addr_kern", KIND_STRUCT),
        )?;
        let sockaddr_un = need("struct sockaddr_un", btf.find("sockaddr_un", KIND_STRUCT))?;
        let off = |id: u32, member: &str| {
            need(member, btf.member_offset(id, member)).and_then(|o| {
                i16::try_from(o)
                    .map_err(|_| EbpfError::Btf(format!("offset of `{member}` out of range")))
            })
        };
        Ok(Self {
            cast_to_kern_ctx: func("bpf_cast_to_kern_ctx")?,
            rdonly_cast: func("bpf_rdonly_cast")?,
            set_sun_path: func("bpf_sock_addr_set_sun_path")?,
            sockaddr_un,
            uaddr_off: off(kern, "uaddr")?,
            uaddrlen_off: off(kern, "uaddrlen")?,
            sun_path_off: off(sockaddr_un, "sun_path")?,
        })
    }
}

/// Assembles the program. `watched` is the fd of the `WATCHED` map in task
/// mode, `None` in cgroup mode (where attachment alone decides).
pub(crate) fn program(
    ids: &KernelIds,
    action: &UnixAction,
    watched: Option<i32>,
    allow_list: Option<i32>,
) -> Result<Vec<Insn>, EbpfError> {
    let mut a = Asm::default();
    let allow = a.label();
    let refuse = a.label();
    let matched = a.label();

    a.mov_reg(R6, R1);

    if let Some(map_fd) = watched {
        let is_watched = a.label();
        // Own cgroup first (the common case), then the ancestors, root down.
        a.call_helper(HELPER_GET_CURRENT_CGROUP_ID);
        lookup_watched(&mut a, map_fd, is_watched);
        for level in 1..=MAX_CGROUP_LEVEL {
            a.mov_imm(R1, level);
            a.call_helper(HELPER_GET_CURRENT_ANCESTOR_CGROUP_ID);
            // 0: deeper than the task's own cgroup.
            a.jmp_imm(Cond::Eq, R0, 0, allow);
            lookup_watched(&mut a, map_fd, is_watched);
        }
        a.ja(allow);
        a.bind(is_watched);
    }

    // r7 = bpf_cast_to_kern_ctx(ctx)
    a.mov_reg(R1, R6);
    a.call_kfunc(ids.cast_to_kern_ctx);
    a.mov_reg(R7, R0);
    // r8 = sa_kern->uaddrlen
    a.load(Size::W, R8, R7, ids.uaddrlen_off);
    // r9 = bpf_rdonly_cast(sa_kern->uaddr, struct sockaddr_un)
    a.load(Size::Dw, R1, R7, ids.uaddr_off);
    a.mov_imm(R2, ids.sockaddr_un as i32);
    a.call_kfunc(ids.rdonly_cast);
    a.mov_reg(R9, R0);

    // Naive search, unrolled: for each start, stop once the mark would run
    // past the passed length, else compare byte by byte.
    let mark = PG_SOCKET_MARK;
    let sun = ids.sun_path_off;
    let not_postgres = a.label();
    for start in 0..=(SUN_PATH_MAX - mark.len()) {
        let next = a.label();
        let end = i32::from(sun) + (start + mark.len()) as i32;
        a.jmp_imm(Cond::Lt, R8, end, not_postgres);
        for (j, byte) in mark.iter().enumerate() {
            a.load(Size::B, R2, R9, sun + (start + j) as i16);
            a.jmp_imm(Cond::Ne, R2, i32::from(*byte), next);
        }
        a.ja(matched);
        a.bind(next);
    }
    a.bind(not_postgres);
    match allow_list {
        None => a.ja(allow),
        Some(map_fd) => {
            // Not a PostgreSQL name: allowed only if the exact path is
            // listed (`[ebpf] unix_allow`), so a PostgreSQL socket reached
            // by another name (symlink, hard link, bind mount,
            // /proc/self/fd/N) is refused with everything else unlisted.
            // The key: the path bytes, zero-padded to 108; a pathname ends
            // at its first NUL, an abstract name (first byte NUL) runs to
            // the passed length.
            for w in 0..(SUN_PATH_MAX / 4) {
                a.store_imm(Size::W, R10, PATH_SLOT + 4 * w as i16, 0);
            }
            // Branch-free but for the length check (a branch on every
            // byte's value would double the verifier's paths per byte):
            // r4 is the byte mask, 0xff until a pathname's first NUL and 0
            // after it; r3 is 1 for an abstract name, whose mask stays.
            let copied = a.label();
            for i in 0..SUN_PATH_MAX {
                let end = i32::from(sun) + i as i32 + 1;
                a.jmp_imm(Cond::Lt, R8, end, copied);
                a.load(Size::B, R2, R9, sun + i as i16);
                if i == 0 {
                    // r3 = (byte0 == 0)
                    a.mov_reg(R3, R2);
                    a.add_imm(R3, 255);
                    a.rsh_imm(R3, 8);
                    a.xor_imm(R3, 1);
                    a.mov_imm(R4, 255);
                } else {
                    a.and_reg(R2, R4);
                    // r4 *= (byte != 0) | abstract
                    a.mov_reg(R5, R2);
                    a.add_imm(R5, 255);
                    a.rsh_imm(R5, 8);
                    a.or_reg(R5, R3);
                    a.mul_reg(R4, R5);
                }
                a.store_reg(Size::B, R10, R2, PATH_SLOT + i as i16);
            }
            a.bind(copied);
            a.ld_map_fd(R1, map_fd);
            a.mov_reg(R2, R10);
            a.add_imm(R2, i32::from(PATH_SLOT));
            a.call_helper(HELPER_MAP_LOOKUP_ELEM);
            a.jmp_imm(Cond::Ne, R0, 0, allow);
            a.ja(refuse);
        }
    }

    a.bind(matched);
    match action {
        UnixAction::Refuse => a.ja(refuse),
        UnixAction::Redirect(path) => {
            // The new path on the stack, 4 bytes per store (zero-padded).
            for (i, chunk) in path.chunks(4).enumerate() {
                let mut word = [0u8; 4];
                word[..chunk.len()].copy_from_slice(chunk);
                a.store_imm(
                    Size::W,
                    R10,
                    PATH_SLOT + 4 * i as i16,
                    i32::from_le_bytes(word),
                );
            }
            a.mov_reg(R1, R7);
            a.mov_reg(R2, R10);
            a.add_imm(R2, i32::from(PATH_SLOT));
            a.mov_imm(R3, path.len() as i32);
            a.call_kfunc(ids.set_sun_path);
            a.jmp_imm(Cond::Ne, R0, 0, refuse);
            a.ja(allow);
        }
    }

    a.bind(allow);
    a.ret(1);
    a.bind(refuse);
    a.ret(0);
    a.finish()
        .map_err(|e| EbpfError::UnixProgram(e.to_string()))
}

/// `if WATCHED[r0] goto found` (clobbers r1-r5, r0).
fn lookup_watched(a: &mut Asm, map_fd: i32, found: Label) {
    a.store_reg(Size::Dw, R10, R0, KEY_SLOT);
    a.ld_map_fd(R1, map_fd);
    a.mov_reg(R2, R10);
    a.add_imm(R2, i32::from(KEY_SLOT));
    a.call_helper(HELPER_MAP_LOOKUP_ELEM);
    a.jmp_imm(Cond::Ne, R0, 0, found);
}

/// The `UNIX_ALLOW` key of an `[ebpf] unix_allow` entry: the path bytes
/// zero-padded to 108 (`@name`: the abstract name, a NUL then `name`).
pub(crate) fn allow_key(entry: &str) -> Result<[u8; SUN_PATH_MAX], String> {
    let bytes: Vec<u8> = match entry.strip_prefix('@') {
        Some(name) => std::iter::once(0).chain(name.bytes()).collect(),
        None if entry.starts_with('/') => entry.as_bytes().to_vec(),
        None => {
            return Err(format!(
                "unix_allow entry `{entry}` is neither an absolute path nor an @abstract name"
            ));
        }
    };
    if bytes.len() > SUN_PATH_MAX - 1 || (bytes[0] != 0 && bytes.contains(&0)) {
        return Err(format!(
            "unix_allow entry `{entry}` does not fit in a unix socket address (107 bytes)"
        ));
    }
    let mut key = [0_u8; SUN_PATH_MAX];
    key[..bytes.len()].copy_from_slice(&bytes);
    Ok(key)
}

/// The configured redirect path, checked: it must fit in `sun_path`.
pub(crate) fn redirect_path(path: &Path) -> Result<Vec<u8>, EbpfError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes().to_vec();
    if bytes.is_empty() || bytes.len() >= SUN_PATH_MAX || bytes.contains(&0) {
        return Err(EbpfError::UnixSocketPath(path.to_owned()));
    }
    Ok(bytes)
}

/// Builds and loads the program.
pub(crate) fn load(
    action: &UnixAction,
    watched: Option<i32>,
    allow_list: Option<i32>,
) -> Result<OwnedFd, EbpfError> {
    let ids = KernelIds::from_vmlinux()?;
    let insns = program(&ids, action, watched, allow_list)?;
    // GPL-compatible: the kernel only lets such programs call kfuncs.
    let license: &CStr = c"Dual MIT/GPL";
    sys::prog_load(
        PROG_TYPE_CGROUP_SOCK_ADDR,
        AttachType::UnixConnect,
        "connect_unix",
        &insns,
        license,
    )
    .map_err(|e| EbpfError::LoadUnix {
        error: e.error,
        log: e.log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> KernelIds {
        KernelIds {
            cast_to_kern_ctx: 100,
            rdonly_cast: 101,
            set_sun_path: 102,
            sockaddr_un: 200,
            uaddr_off: 8,
            uaddrlen_off: 32,
            sun_path_off: 2,
        }
    }

    /// Runs the byte search of an assembled program over `path` in a tiny
    /// interpreter of the instructions it uses; returns the verdict and the
    /// rewritten path, if any.
    fn run(insns: &[Insn], path: &[u8]) -> (i64, Option<Vec<u8>>) {
        run_with(insns, path, &[])
    }

    /// [`run`] with `UNIX_ALLOW` holding `allowed`.
    fn run_with(
        insns: &[Insn],
        path: &[u8],
        allowed: &[[u8; SUN_PATH_MAX]],
    ) -> (i64, Option<Vec<u8>>) {
        let mut sun = [0u8; 110];
        sun[2..2 + path.len()].copy_from_slice(path);
        let uaddrlen = 2 + path.len() as i64;
        let mut r = [0i64; 11];
        let mut stack = [0u8; 512];
        let mut rewritten = None;
        let mut pc = 0usize;
        loop {
            let i = insns[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                0xbf => r[dst] = r[src],
                0xb7 => r[dst] = i64::from(i.imm),
                0x07 => r[dst] += i64::from(i.imm),
                0x61 => r[dst] = if src == 7 && i.off == 32 { uaddrlen } else { 0 },
                0x79 => r[dst] = 0,
                0x71 => r[dst] = i64::from(sun[i.off as usize]),
                0x62 => {
                    let at = (512 + i64::from(i.off)) as usize;
                    stack[at..at + 4].copy_from_slice(&i.imm.to_le_bytes());
                }
                0x5f => r[dst] &= r[src],
                0x4f => r[dst] |= r[src],
                0x2f => r[dst] = r[dst].wrapping_mul(r[src]),
                0x77 => r[dst] = ((r[dst] as u64) >> i.imm) as i64,
                0xa7 => r[dst] ^= i64::from(i.imm),
                0x73 => {
                    let at = (512 + r[dst] + i64::from(i.off)) as usize;
                    stack[at] = r[src] as u8;
                }
                0x18 => {
                    r[dst] = i64::from(i.imm);
                    pc += 1;
                }
                0x85 if i.regs >> 4 == 0 && i.imm == HELPER_MAP_LOOKUP_ELEM => {
                    let at = (512 + r[2]) as usize;
                    let key = &stack[at..at + SUN_PATH_MAX];
                    r[0] = i64::from(allowed.iter().any(|k| k[..] == *key));
                }
                0x85 if i.regs >> 4 == 2 => {
                    if i.imm == 102 {
                        let at = (512 + r[2]) as usize;
                        rewritten = Some(stack[at..at + r[3] as usize].to_vec());
                    }
                    r[0] = 0;
                }
                0x05 => pc = (pc as i64 + i64::from(i.off)) as usize,
                0x15 | 0x55 | 0xa5 => {
                    let (a, b) = (r[dst], i64::from(i.imm));
                    let take = match i.code {
                        0x15 => a == b,
                        0x55 => a != b,
                        _ => (a as u64) < (b as u64),
                    };
                    if take {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                0x95 => return (r[0], rewritten),
                c => panic!("unexpected opcode {c:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn refuses_postgres_sockets_only() {
        let p = program(&ids(), &UnixAction::Refuse, None, None).unwrap();
        assert_eq!(run(&p, b"/var/run/postgresql/.s.PGSQL.5432").0, 0);
        assert_eq!(run(&p, b".s.PGSQL.1").0, 0);
        assert_eq!(run(&p, b"\0/tmp/.s.PGSQL.5432").0, 0, "abstract name");
        assert_eq!(run(&p, b"/tmp/x.sock").0, 1);
        assert_eq!(run(&p, b"/tmp/.s.PGSQ").0, 1, "truncated mark");
        assert_eq!(run(&p, b"/tmp/.s.pgsql.5432").0, 1);
        let long = [b'a'; 99];
        let mut at_end = long.to_vec();
        at_end.extend_from_slice(PG_SOCKET_MARK);
        assert_eq!(at_end.len(), 108);
        assert_eq!(run(&p, &at_end).0, 0, "mark in the last bytes");
    }

    #[test]
    fn redirects_to_the_proxy_path() {
        let to = b"/run/interceptor/pg.sock".to_vec();
        let p = program(&ids(), &UnixAction::Redirect(to.clone()), None, None).unwrap();
        assert_eq!(run(&p, b"/tmp/.s.PGSQL.5432"), (1, Some(to)));
        assert_eq!(run(&p, b"/tmp/other"), (1, None));
    }

    #[test]
    fn an_allow_list_refuses_every_unlisted_path() {
        let allowed = [
            allow_key("/run/dbus/system_bus_socket").unwrap(),
            allow_key("@/tmp/.X11-unix/X0").unwrap(),
        ];
        let to = b"/run/interceptor/pg.sock".to_vec();
        let p = program(&ids(), &UnixAction::Redirect(to.clone()), None, Some(9)).unwrap();
        // Listed: allowed, also with the trailing NUL and garbage a caller
        // passing sizeof(struct sockaddr_un) leaves after it.
        assert_eq!(
            run_with(&p, b"/run/dbus/system_bus_socket", &allowed),
            (1, None)
        );
        assert_eq!(
            run_with(&p, b"/run/dbus/system_bus_socket\0\x07\x07", &allowed),
            (1, None)
        );
        assert_eq!(run_with(&p, b"\0/tmp/.X11-unix/X0", &allowed), (1, None));
        // PostgreSQL names are still redirected.
        assert_eq!(run_with(&p, b"/tmp/.s.PGSQL.5432", &allowed), (1, Some(to)));
        // Everything else: a symlink or hard link to a PostgreSQL socket by
        // another name, /proc/self/fd/N, a bind mount's path, a prefix or
        // extension of a listed path, another abstract name.
        for path in [
            &b"/tmp/innocent"[..],
            b"/proc/self/fd/5",
            b"/mnt/bound/socket",
            b"/run/dbus/system_bus_socke",
            b"/run/dbus/system_bus_socket2",
            b"\0/tmp/.X11-unix/X1",
            b"\0/run/dbus/system_bus_socket",
        ] {
            assert_eq!(
                run_with(&p, path, &allowed).0,
                0,
                "{}",
                String::from_utf8_lossy(path)
            );
        }
        assert!(allow_key("relative").is_err());
        assert!(allow_key(&format!("/{}", "a".repeat(107))).is_err());
    }

    #[test]
    fn task_mode_program_assembles() {
        let p = program(&ids(), &UnixAction::Refuse, Some(3), None).unwrap();
        assert!(p.iter().any(|i| i.code == 0x18 && i.imm == 3));
        assert!(p.len() < 4096);
    }

    #[test]
    fn redirect_path_must_fit() {
        assert!(redirect_path(Path::new("/run/x.sock")).is_ok());
        assert!(redirect_path(Path::new(&"/a".repeat(60))).is_err());
    }

    #[test]
    fn kernel_ids_from_this_kernel() {
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let ids = KernelIds::from_vmlinux().unwrap();
        assert_eq!(ids.sun_path_off, 2);
        assert!(ids.uaddrlen_off > ids.uaddr_off);
    }
}
