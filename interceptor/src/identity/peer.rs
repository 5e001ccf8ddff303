//! The process on the other end of a loopback TCP connection made straight to
//! the proxy port: ask the kernel for the client socket's inode by its exact
//! 4-tuple (`NETLINK_SOCK_DIAG`, one socket, not a table dump; reading
//! `/proc/net/tcp` instead costs milliseconds once thousands of TIME_WAIT
//! sockets pile up under `pgbench -C`), then find the process holding that
//! inode among `/proc/*/fd`. `/proc/net/tcp{,6}` is the fallback when
//! sock_diag is unavailable.
//!
//! The fd scan is the expensive part, so the processes found last are tried
//! first: a job that reconnects per transaction (`pgbench -C`) is found in one
//! directory read instead of a scan of every process.

use std::{
    collections::VecDeque,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Mutex, OnceLock},
};

/// Recently matched pids tried before a full scan.
const RECENT: usize = 8;

fn recent() -> &'static Mutex<VecDeque<u32>> {
    static RECENT_PIDS: OnceLock<Mutex<VecDeque<u32>>> = OnceLock::new();
    RECENT_PIDS.get_or_init(Mutex::default)
}

/// The pid of the process owning the client socket of the TCP connection
/// `peer` -> `local` (as seen by the proxy's accepted socket), if it is on
/// this host and still open.
pub fn pid_of_tcp_peer(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let inode = diag_inode(peer, local).or_else(|| {
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .into_iter()
            .find_map(|table| find_inode(&fs::read_to_string(table).ok()?, peer, local))
    })?;
    let needle = format!("socket:[{inode}]");
    let recents: Vec<u32> = recent().lock().ok()?.iter().copied().collect();
    let pid = recents
        .into_iter()
        .find(|pid| holds(*pid, &needle))
        .or_else(|| {
            fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                holds(pid, &needle).then_some(pid)
            })
        })?;
    if let Ok(mut r) = recent().lock() {
        r.retain(|p| *p != pid);
        r.push_front(pid);
        r.truncate(RECENT);
    }
    Some(pid)
}

/// Inode of the TCP socket `client` -> `server` by a sock_diag "get one"
/// request (inet_diag, exact 4-tuple). Both address families are asked: a
/// client may use a v4 or a dual-stack v6 socket for a v4 connection.
fn diag_inode(client: SocketAddr, server: SocketAddr) -> Option<u64> {
    use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_sock_diag::{
        SockDiagMessage,
        constants::{AF_INET, AF_INET6, IPPROTO_TCP},
        inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    };
    use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_SOCK_DIAG};

    let (client, server) = (unmap(client), unmap(server));
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).ok()?;
    socket.bind_auto().ok()?;
    socket.connect(&NlAddr::new(0, 0)).ok()?;
    let candidates: Vec<(u8, IpAddr, IpAddr)> = match (client.ip(), server.ip()) {
        (IpAddr::V4(c), IpAddr::V4(s)) => vec![
            (AF_INET, c.into(), s.into()),
            (
                AF_INET6,
                c.to_ipv6_mapped().into(),
                s.to_ipv6_mapped().into(),
            ),
        ],
        (c, s) => vec![(AF_INET6, c, s)],
    };
    for (family, src, dst) in candidates {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        let mut packet = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: SocketId {
                    source_port: client.port(),
                    destination_port: server.port(),
                    source_address: src,
                    destination_address: dst,
                    interface_id: 0,
                    // INET_DIAG_NOCOOKIE: match by addresses and ports only.
                    cookie: [0xff; 8],
                },
            })
            .into(),
        );
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        socket.send(&buf, 0).ok()?;
        let mut reply = vec![0u8; 8192];
        let n = socket.recv(&mut &mut reply[..], 0).ok()?;
        let Ok(msg) = NetlinkMessage::<SockDiagMessage>::deserialize(&reply[..n]) else {
            continue;
        };
        if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) = msg.payload
            && r.header.inode != 0
        {
            return Some(u64::from(r.header.inode));
        }
    }
    None
}

fn holds(pid: u32, needle: &str) -> bool {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == needle))
}

/// Inode of the socket whose local address is `client` and remote `server`.
fn find_inode(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u64> {
    let (client, server) = (unmap(client), unmap(server));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local = parse_addr(f.get(1)?)?;
        let remote = parse_addr(f.get(2)?)?;
        (unmap(local) == client && unmap(remote) == server).then(|| f.get(9)?.parse().ok())?
    })
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(a, |v4| SocketAddr::new(v4.into(), a.port())),
        IpAddr::V4(_) => a,
    }
}

/// `/proc/net/tcp` prints each 32-bit word of the address in host byte order
/// as hex (`%08X`), then `:PORT` in hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::from_be)
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?.to_be_bytes())),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_addresses() {
        // 127.0.0.1:8080 as the little-endian kernel prints it.
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0016"),
            Some("[::1]:22".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:1538"),
            Some("[::ffff:127.0.0.1]:5432".parse().unwrap())
        );
    }

    #[test]
    fn sock_diag_and_proc_net_agree() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        let by_diag = diag_inode(peer, server).expect("sock_diag answers for a live socket");
        let by_proc =
            find_inode(&fs::read_to_string("/proc/net/tcp").unwrap(), peer, server).unwrap();
        assert_eq!(by_diag, by_proc);
        drop(client);
        // v6 loopback too.
        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let server = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(server).unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        assert!(diag_inode(peer, server).is_some());
    }

    #[test]
    fn finds_own_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let pid = pid_of_tcp_peer(peer, listener.local_addr().unwrap());
        assert_eq!(pid, Some(std::process::id()));
    }
}
