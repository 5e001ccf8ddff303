//! The maps shared with the kernel programs: what the daemon writes
//! (settings, targets, watched cgroups) and the records it reads, with the
//! conversions between config / socket addresses and the `#[repr(C)]` types.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    path::Path,
};

use aya::maps::{Array, HashMap, LpmTrie, MapData, MapInfo, MapType, lpm_trie::Key};
use interceptor_common::{
    ClientKey, SETTINGS_HAS_PROXY6, SETTINGS_TASK_MODE, Settings, SockRecord, TARGET_KEY_BITS,
    TargetKey, map_names,
};

use super::{ConnectRecord, EbpfError};
use crate::config::{AttachMode, Config};

/// Entries of the `TARGETS` trie (see `interceptor-ebpf/src/maps.rs`).
pub(crate) const MAX_TARGET_KEYS: u32 = 1024;

/// The key of `CLIENTS` for an accepted socket's peer address: IPv4 peers as
/// v4-mapped IPv6, so a v4 listener and a dual-stack one agree.
pub(crate) fn client_key(peer: SocketAddr) -> ClientKey {
    let addr = match peer.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    ClientKey {
        addr,
        port: peer.port(),
        pad: 0,
    }
}

/// A kernel record as the daemon's [`ConnectRecord`]. A v4-mapped original
/// destination is given as plain IPv4: that is where the connect would have
/// gone.
pub(crate) fn connect_record(raw: &SockRecord) -> ConnectRecord {
    let v6 = Ipv6Addr::from(raw.orig_addr);
    let orig_dst = match v6.to_ipv4_mapped() {
        Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, raw.orig_port)),
        None => SocketAddr::V6(SocketAddrV6::new(v6, raw.orig_port, 0, 0)),
    };
    let comm_len = raw
        .comm
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(raw.comm.len());
    ConnectRecord {
        orig_dst,
        pid: raw.pid,
        tgid: raw.tgid,
        uid: raw.uid,
        gid: raw.gid,
        cgroup_id: raw.cgroup_id,
        comm: String::from_utf8_lossy(&raw.comm[..comm_len]).into_owned(),
    }
}

/// The `SETTINGS` entry for `config`.
pub(crate) fn settings(config: &Config) -> Settings {
    let proxy4 = match config.proxy.listen.ip() {
        IpAddr::V4(v4) => v4,
        // Validation refuses a non-IPv4 `listen`; never reached.
        IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
    };
    let mut s = Settings {
        proxy4_addr: proxy4.octets(),
        proxy4_port: config.proxy.listen.port(),
        ..Settings::default()
    };
    if let Some(SocketAddr::V6(l6)) = config.proxy.listen6 {
        s.proxy6_addr = l6.ip().octets();
        s.proxy6_port = l6.port();
        s.flags |= SETTINGS_HAS_PROXY6;
    }
    if config.ebpf.mode == AttachMode::Task {
        s.flags |= SETTINGS_TASK_MODE;
    }
    s
}

/// The `TARGETS` entries: (port, mapped prefix) -> target index. A target
/// with no address ranges matches its port on any address (prefix = port).
pub(crate) fn target_keys(config: &Config) -> Vec<(Key<TargetKey>, u32)> {
    let mut keys = Vec::new();
    for (i, t) in config.targets.iter().enumerate() {
        let port = t.port.to_be_bytes();
        if t.addrs.is_empty() {
            keys.push((
                Key::new(
                    16,
                    TargetKey {
                        port,
                        addr: [0; 16],
                    },
                ),
                i as u32,
            ));
        }
        for net in t.all_addrs() {
            let (addr, prefix) = net.to_mapped();
            let addr = mask(addr, prefix);
            keys.push((
                Key::new(16 + u32::from(prefix), TargetKey { port, addr }),
                i as u32,
            ));
        }
    }
    // Refused ports: any address (prefix = port only), so a target's own
    // ranges on the same port (longer prefixes) still redirect; a target
    // that takes the whole port wins.
    for &port in &config.ebpf.refuse_ports {
        if config
            .targets
            .iter()
            .any(|t| t.port == port && t.addrs.is_empty())
        {
            continue;
        }
        keys.push((
            Key::new(
                16,
                TargetKey {
                    port: port.to_be_bytes(),
                    addr: [0; 16],
                },
            ),
            interceptor_common::TARGET_REFUSE,
        ));
    }
    debug_assert!(keys.iter().all(|(k, _)| k.prefix_len() <= TARGET_KEY_BITS));
    keys
}

/// Clears the bits past `prefix` (the LPM trie ignores them, but equal keys
/// should be equal bytes).
fn mask(addr: [u8; 16], prefix: u8) -> [u8; 16] {
    let bits = u128::from_be_bytes(addr);
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    (bits & mask).to_be_bytes()
}

/// Writes the settings, targets and watched cgroup ids into freshly created
/// (unpinned) maps, before any program using them is attached.
pub(crate) fn fill(
    ebpf: &mut aya::Ebpf,
    config: &Config,
    watched: &[u64],
) -> Result<(), EbpfError> {
    let map_err = |name: &'static str| move |source| EbpfError::Map { name, source };

    let mut settings_map: Array<&mut MapData, Settings> = Array::try_from(
        ebpf.map_mut(map_names::SETTINGS)
            .ok_or(EbpfError::Missing("map SETTINGS"))?,
    )
    .map_err(map_err("SETTINGS"))?;
    settings_map
        .set(0, settings(config), 0)
        .map_err(map_err("SETTINGS"))?;

    let keys = target_keys(config);
    if keys.len() > MAX_TARGET_KEYS as usize {
        return Err(EbpfError::TooManyTargets(keys.len(), MAX_TARGET_KEYS));
    }
    let mut targets: LpmTrie<&mut MapData, TargetKey, u32> = LpmTrie::try_from(
        ebpf.map_mut(map_names::TARGETS)
            .ok_or(EbpfError::Missing("map TARGETS"))?,
    )
    .map_err(map_err("TARGETS"))?;
    for (key, index) in &keys {
        targets.insert(key, index, 0).map_err(map_err("TARGETS"))?;
    }

    let mut watched_map: HashMap<&mut MapData, u64, u8> = HashMap::try_from(
        ebpf.map_mut(map_names::WATCHED)
            .ok_or(EbpfError::Missing("map WATCHED"))?,
    )
    .map_err(map_err("WATCHED"))?;
    for id in watched {
        watched_map.insert(id, 1, 0).map_err(map_err("WATCHED"))?;
    }

    let mut allow_map: HashMap<&mut MapData, [u8; 108], u8> = HashMap::try_from(
        ebpf.map_mut(map_names::UNIX_ALLOW)
            .ok_or(EbpfError::Missing("map UNIX_ALLOW"))?,
    )
    .map_err(map_err("UNIX_ALLOW"))?;
    for entry in config.ebpf.unix_allow.iter().flatten() {
        // Checked when the configuration was read.
        let key =
            super::unix::allow_key(entry).map_err(|_| EbpfError::UnixSocketPath(entry.into()))?;
        allow_map.insert(key, 1, 0).map_err(map_err("UNIX_ALLOW"))?;
    }
    Ok(())
}

/// What a pinned map must look like to be reused.
pub(crate) struct MapShape {
    pub(crate) name: &'static str,
    pub(crate) map_type: MapType,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
}

/// The maps that are pinned and reused across restarts: the records (the
/// proxy reads `CLIENTS`; `SOCKS` carries records from connect to `sock_ops`).
pub(crate) fn pinned_shapes(max_connections: u32) -> [MapShape; 2] {
    [
        MapShape {
            name: map_names::CLIENTS,
            map_type: MapType::LruHash,
            key_size: size_of::<ClientKey>() as u32,
            value_size: size_of::<SockRecord>() as u32,
            max_entries: max_connections,
        },
        MapShape {
            name: map_names::SOCKS,
            map_type: MapType::SkStorage,
            key_size: 4,
            value_size: size_of::<SockRecord>() as u32,
            max_entries: 0,
        },
    ]
}

/// Whether the map pinned at `path` has `shape`. A pin from another version
/// or with another size is removed and created again by the loader.
pub(crate) fn pinned_matches(path: &Path, shape: &MapShape) -> bool {
    MapInfo::from_pin(path).is_ok_and(|info| {
        info.map_type().is_ok_and(|t| t == shape.map_type)
            && info.key_size() == shape.key_size
            && info.value_size() == shape.value_size
            && info.max_entries() == shape.max_entries
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("t.toml"), text).unwrap()
    }

    #[test]
    fn client_keys_normalise_v4_to_mapped() {
        let v4 = client_key("127.0.0.1:40000".parse().unwrap());
        let mapped = client_key("[::ffff:127.0.0.1]:40000".parse().unwrap());
        assert_eq!(v4, mapped);
        assert_eq!(&v4.addr[10..], &[0xff, 0xff, 127, 0, 0, 1]);
        assert_eq!(v4.port, 40000);
        let v6 = client_key("[::1]:40000".parse().unwrap());
        assert_eq!(v6.addr[15], 1);
        assert_ne!(v6, v4);
    }

    #[test]
    fn records_convert() {
        let mut raw = SockRecord::zeroed();
        raw.orig_addr = Ipv4Addr::new(127, 0, 0, 42).to_ipv6_mapped().octets();
        raw.orig_port = 5432;
        raw.pid = 7;
        raw.tgid = 6;
        raw.comm[..4].copy_from_slice(b"psql");
        let r = connect_record(&raw);
        assert_eq!(r.orig_dst, "127.0.0.42:5432".parse().unwrap());
        assert_eq!((r.pid, r.tgid), (7, 6));
        assert_eq!(r.comm, "psql");
        raw.orig_addr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(connect_record(&raw).orig_dst, "[::1]:5432".parse().unwrap());
    }

    #[test]
    fn target_keys_put_the_port_in_the_prefix() {
        let c = config(
            "[[target]]\nname = \"a\"\naddrs = [\"127.1.2.0/24\", \"::1\"]\n[[target]]\nname = \"b\"\nport = 6432\n",
        );
        let keys = target_keys(&c);
        assert_eq!(keys.len(), 3);
        let (k, i) = &keys[0];
        assert_eq!((k.prefix_len(), *i), (16 + 96 + 24, 0));
        let data = k.data();
        assert_eq!(data.port, 5432u16.to_be_bytes());
        assert_eq!(&data.addr[10..], &[0xff, 0xff, 127, 1, 2, 0]);
        assert_eq!(keys[1].0.prefix_len(), 16 + 128);
        assert_eq!((keys[2].0.prefix_len(), keys[2].1), (16, 1));
        assert_eq!(keys[2].0.data().port, 6432u16.to_be_bytes());
    }

    #[test]
    fn settings_carry_listeners_and_mode() {
        let c = config(
            "[proxy]\nlisten = \"127.0.0.1:15432\"\nlisten6 = \"[::1]:15433\"\n[ebpf]\nmode = \"task\"\nattach_to = \"x\"\n[[target]]\nname = \"a\"\n",
        );
        let s = settings(&c);
        assert_eq!(s.proxy4_addr, [127, 0, 0, 1]);
        assert_eq!(s.proxy4_port, 15432);
        assert_eq!(s.proxy6_port, 15433);
        assert_eq!(s.proxy6_addr[15], 1);
        assert_eq!(s.flags, SETTINGS_HAS_PROXY6 | SETTINGS_TASK_MODE);
    }

    #[test]
    fn mask_clears_host_bits() {
        let a = Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().octets();
        assert_eq!(&mask(a, 120)[12..], &[10, 1, 2, 0]);
        assert_eq!(mask(a, 0), [0; 16]);
        assert_eq!(mask(a, 128), a);
    }
}
