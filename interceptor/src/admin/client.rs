//! The CLI's side: one request, one response, blocking (the CLI has no
//! runtime).

use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

/// Time the CLI waits for the daemon's answer by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_mins(1);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket.
    #[error(
        "the interceptor daemon is not running (no admin socket answering at {0}); start it with `interceptor run`, or pass the daemon's --config / --socket"
    )]
    NotRunning(PathBuf),
    /// The socket is there but not ours to use.
    #[error("permission denied on {0}: the admin socket is root-only (run this as root)")]
    PermissionDenied(PathBuf),
    /// Talking to the daemon failed.
    #[error("admin socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What happened.
        source: io::Error,
    },
    /// The daemon answered with something that is not the protocol.
    #[error("admin socket {0}: the daemon's answer is not a response line")]
    Protocol(PathBuf),
    /// The daemon refused the request; its message as it is.
    #[error("{0}")]
    Refused(String),
}

/// Sends `{"op": op, ...params}` to the daemon at `socket` and returns
/// the `result` (waits at most [`DEFAULT_TIMEOUT`]).
pub fn call(socket: &Path, op: &str, params: Value) -> Result<Value, ClientError> {
    call_with_timeout(socket, op, params, Some(DEFAULT_TIMEOUT))
}

/// [`call`] with an explicit timeout (`None`: wait as long as it takes).
pub fn call_with_timeout(
    socket: &Path,
    op: &str,
    params: Value,
    timeout: Option<Duration>,
) -> Result<Value, ClientError> {
    let io_err = |source| ClientError::Io {
        path: socket.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(socket.to_owned())
        }
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(socket.to_owned()),
        _ => io_err(e),
    })?;
    stream.set_read_timeout(timeout).map_err(io_err)?;
    let mut request = match params {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("params".into(), other);
            m
        }
    };
    request.insert("op".into(), Value::String(op.to_owned()));
    let mut line = Value::Object(request).to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_err)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io_err)?;
    let answer: Value = serde_json::from_str(answer.trim())
        .map_err(|_| ClientError::Protocol(socket.to_owned()))?;
    match answer.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        Some(false) => Err(ClientError::Refused(
            answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the daemon refused the request")
                .to_owned(),
        )),
        None => Err(ClientError::Protocol(socket.to_owned())),
    }
}
