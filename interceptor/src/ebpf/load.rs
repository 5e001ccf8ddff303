//! `Redirector::start`: resolve the cgroups, load the object, fill its maps,
//! load the programs and (re)attach them through pinned links.

use std::{
    collections::HashSet,
    fs::File,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    EbpfLoader,
    maps::{HashMap, Map},
    programs::{CgroupSockAddr, SockOps},
};
use interceptor_common::{map_names, prog_names};

use super::{
    EbpfError, Redirector,
    cgroup::{self, Cgroup},
    maps, pin,
    sys::{self, AttachType},
    unix::{self, UnixAction},
};
use crate::config::{AttachMode, Config, UnixSocketPolicy};

/// The eBPF object built by `build.rs` (aya-build) from `interceptor-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/interceptor"));

/// The aya-loaded hooks, in attach order: the ones that publish records
/// (`sock_ops`, getpeername) before the ones that redirect, so that during a
/// first install a redirected connect finds its record path in place.
pub(crate) const HOOKS: [(&str, AttachType); 5] = [
    (prog_names::SOCK_OPS, AttachType::SockOps),
    (prog_names::GETPEERNAME4, AttachType::GetPeerName4),
    (prog_names::GETPEERNAME6, AttachType::GetPeerName6),
    (prog_names::CONNECT4, AttachType::Connect4),
    (prog_names::CONNECT6, AttachType::Connect6),
];
/// Pin name of the raw `cgroup/connect_unix` program's links.
pub(crate) const UNIX_HOOK: &str = "connect_unix";

/// Where the programs go and which cgroups are watched.
#[derive(Debug)]
struct Plan {
    /// Cgroups the programs are attached to.
    attach: Vec<Cgroup>,
    /// Ids of the watched cgroups (used by the programs in task mode).
    watched: Vec<u64>,
}

fn plan(config: &Config, mount: &Path) -> Result<Plan, EbpfError> {
    let watched: Vec<Cgroup> = config
        .ebpf
        .cgroups
        .iter()
        .map(|p| cgroup::resolve(mount, p, "cgroups"))
        .collect::<Result<_, _>>()?;
    let own = cgroup::own_cgroup(mount)?;
    let attach = match config.ebpf.mode {
        AttachMode::Cgroup => watched.clone(),
        AttachMode::Task => {
            let to = config.ebpf.attach_to.as_deref().ok_or_else(|| {
                EbpfError::io(
                    "ebpf.attach_to",
                    std::io::Error::other("task mode needs attach_to"),
                )
            })?;
            let to = cgroup::resolve(mount, to, "attach_to")?;
            if let Some(w) = watched.iter().find(|w| !w.path.starts_with(&to.path)) {
                return Err(EbpfError::TaskOutsideAttach {
                    cgroup: w.path.clone(),
                    attach_to: to.path,
                });
            }
            vec![to]
        }
    };
    // In cgroup mode a socket is judged by the cgroup it was created in, so
    // the daemon must not be under an attach point; in task mode by the
    // task's cgroup, so it must not be under a watched one.
    let guarded = match config.ebpf.mode {
        AttachMode::Cgroup => &attach,
        AttachMode::Task => &watched,
    };
    if let Some(w) = guarded.iter().find(|w| own.starts_with(&w.path)) {
        return Err(EbpfError::DaemonWatched {
            own,
            watched: w.path.clone(),
        });
    }
    let mut seen = HashSet::new();
    let attach = attach.into_iter().filter(|c| seen.insert(c.id)).collect();
    Ok(Plan {
        attach,
        watched: watched.iter().map(|c| c.id).collect(),
    })
}

pub(crate) fn start(config: &Config) -> Result<Redirector, EbpfError> {
    let mount = cgroup::cgroup2_mount()?;
    let plan = plan(config, &mount)?;
    if plan.watched.is_empty() {
        tracing::warn!("ebpf.cgroups is empty: no process is intercepted");
    }
    let pin_dir = config.ebpf.pin_dir.as_path();
    pin::ensure_pin_dir(pin_dir)?;

    // Record maps are pinned and reused, so that records survive a restart
    // and a restarted daemon reads the map the attached programs write.
    let max = config.ebpf.max_connections;
    let shapes = maps::pinned_shapes(max);
    let map_pins: Vec<PathBuf> = shapes
        .iter()
        .map(|s| pin::map_path(pin_dir, s.name))
        .collect();
    for (shape, path) in shapes.iter().zip(&map_pins) {
        if path.exists() && !maps::pinned_matches(path, shape) {
            tracing::warn!(pin = %path.display(), "pinned map has another shape, recreating it");
            std::fs::remove_file(path)
                .map_err(|e| EbpfError::io(format!("removing {}", path.display()), e))?;
        }
    }
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(map_names::CLIENTS, max);
    for (shape, path) in shapes.iter().zip(&map_pins) {
        loader.map_pin_path(shape.name, path.as_path());
    }
    let mut ebpf = loader.load(OBJECT)?;
    // Settings, targets and watched ids go into fresh maps before anything
    // that reads them is attached; swapping the programs swaps them whole.
    maps::fill(&mut ebpf, config, &plan.watched)?;

    let cgroups: Vec<(File, &Cgroup)> = plan
        .attach
        .iter()
        .map(|c| {
            File::open(&c.path)
                .map(|f| (f, c))
                .map_err(|e| EbpfError::io(format!("opening {}", c.path.display()), e))
        })
        .collect::<Result<_, _>>()?;
    // Load every program before attaching any, so that a program the kernel
    // refuses leaves the attachments as they were.
    let mut programs: Vec<(&'static str, AttachType, OwnedFd)> = Vec::new();
    for (name, attach) in HOOKS {
        let program = ebpf.program_mut(name).ok_or(EbpfError::Missing(name))?;
        let program_err = |source| EbpfError::Program { name, source };
        let fd = if attach == AttachType::SockOps {
            let p: &mut SockOps = program.try_into().map_err(program_err)?;
            p.load().map_err(program_err)?;
            p.fd().map_err(program_err)?.as_fd().try_clone_to_owned()
        } else {
            let p: &mut CgroupSockAddr = program.try_into().map_err(program_err)?;
            p.load().map_err(program_err)?;
            p.fd().map_err(program_err)?.as_fd().try_clone_to_owned()
        };
        programs.push((
            name,
            attach,
            fd.map_err(|e| EbpfError::io("dup program fd", e))?,
        ));
    }
    let action = match (config.ebpf.unix_sockets, &config.proxy.unix_socket) {
        (UnixSocketPolicy::Redirect, Some(path)) => {
            UnixAction::Redirect(unix::redirect_path(path)?)
        }
        _ => UnixAction::Refuse,
    };
    let watched_fd = match config.ebpf.mode {
        AttachMode::Cgroup => None,
        AttachMode::Task => match ebpf.map(map_names::WATCHED) {
            Some(Map::HashMap(data)) => Some(data.fd().as_fd().as_raw_fd()),
            _ => return Err(EbpfError::Missing("map WATCHED")),
        },
    };
    // `ebpf` (and so the WATCHED fd) is alive until the end of this function;
    // the loaded program holds its own reference to the map.
    let allow_fd = match &config.ebpf.unix_allow {
        None => None,
        Some(_) => match ebpf.map(map_names::UNIX_ALLOW) {
            Some(Map::HashMap(data)) => Some(data.fd().as_fd().as_raw_fd()),
            _ => return Err(EbpfError::Missing("map UNIX_ALLOW")),
        },
    };
    programs.push((
        UNIX_HOOK,
        AttachType::UnixConnect,
        unix::load(&action, watched_fd, allow_fd)?,
    ));

    let mut keep = HashSet::new();
    for (name, attach, fd) in &programs {
        for (file, cg) in &cgroups {
            let path = pin::link_path(pin_dir, cg.id, name);
            pin::refresh_link(&path, fd.as_fd(), file, &cg.path, *attach, name)?;
            keep.insert(path);
        }
    }
    pin::remove_stale_links(pin_dir, &keep)?;

    let clients = ebpf
        .take_map(map_names::CLIENTS)
        .ok_or(EbpfError::Missing("map CLIENTS"))?;
    let clients = HashMap::try_from(clients).map_err(|source| EbpfError::Map {
        name: "CLIENTS",
        source,
    })?;
    tracing::info!(
        cgroups = ?plan.attach.iter().map(|c| c.path.display().to_string()).collect::<Vec<_>>(),
        mode = ?config.ebpf.mode,
        pin_dir = %pin_dir.display(),
        unix = ?action,
        "eBPF programs attached"
    );
    // Dropping `ebpf` closes our program fds; the pinned links keep the
    // programs (and the maps they use) alive.
    Ok(Redirector {
        clients: Mutex::new(clients),
    })
}

/// How many programs are attached directly to `cgroup` at each of our hooks
/// (diagnostics, and the tests' check that a restart does not stack programs).
pub fn attached_counts(cgroup: &Path) -> Result<Vec<(&'static str, u32)>, EbpfError> {
    let file = File::open(cgroup)
        .map_err(|e| EbpfError::io(format!("opening {}", cgroup.display()), e))?;
    HOOKS
        .iter()
        .copied()
        .chain([(UNIX_HOOK, AttachType::UnixConnect)])
        .map(|(name, attach)| {
            sys::prog_query_count(file.as_fd(), attach)
                .map(|n| (name, n))
                .map_err(|e| EbpfError::io(format!("querying {name} on {}", cgroup.display()), e))
        })
        .collect()
}
