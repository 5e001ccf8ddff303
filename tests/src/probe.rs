//! A raw-socket probe (Python, Debian's `/usr/bin/python3`) for what psql
//! does not show: the peer address a client sees (`getpeername`), the first
//! authentication request it gets, and the reply to malformed bytes.

use std::process::Command;

/// The probe's source. `python3 -c PROBE HOST PORT MODE`:
///
/// - `startup`: sends a StartupMessage (user `app`, database `demo`) and
///   prints the first message type and, for `R`, the authentication code
///   (0 = ok, as the proxy answers an attested client; 10 = SASL, as the
///   real server would).
/// - `read`: prints the first bytes the server sends.
/// - `bad-version`: a startup packet with protocol version 0x12345678.
/// - `oversized`: a startup packet claiming 2 GiB.
///
/// Always prints `peer=HOST:PORT` (getpeername) and `local=HOST:PORT` first.
pub const PROBE: &str = r#"
import socket, struct, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(15)
try:
    s.connect((host, port))
except OSError as e:
    print("connect_error=%s" % e.strerror)
    sys.exit(3)
peer, local = s.getpeername(), s.getsockname()
print("peer=%s:%d" % (peer[0], peer[1]))
print("local=%s:%d" % (local[0], local[1]))
sys.stdout.flush()

def recvn(n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf

def reply():
    t = recvn(1)
    if not t:
        print("first=EOF")
        return
    print("first=%s" % t.decode("latin-1"))
    (ln,) = struct.unpack("!I", recvn(4))
    payload = recvn(min(ln - 4, 65536))
    if t == b"R":
        print("auth=%d" % struct.unpack("!I", payload[:4])[0])
    elif t == b"E":
        fields = [f for f in payload.split(b"\0") if f]
        for f in fields:
            print("error_%s=%s" % (chr(f[0]), f[1:].decode("utf-8", "replace")))

if mode == "startup":
    body = struct.pack("!I", 196608) + b"user\0app\0database\0demo\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    reply()
    s.sendall(b"X\0\0\0\x04")
elif mode == "read":
    print("data=%s" % s.recv(100).decode("latin-1"))
elif mode == "bad-version":
    body = struct.pack("!I", 0x12345678) + b"user\0app\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    reply()
elif mode == "oversized":
    s.sendall(struct.pack("!II", 0x7FFFFFF0, 196608) + b"user\0")
    reply()
"#;

/// `python3 -c PROBE host port mode` with a clean environment.
pub fn probe(host: &str, port: u16, mode: &str) -> Command {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", PROBE, host, &port.to_string(), mode])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/");
    cmd
}

/// The value of `key=...` in a probe's output.
pub fn value<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}
