//! The byte streams a session reads and writes: plain or TLS, TCP or unix
//! socket. Enums rather than trait objects, so the relay's reads and writes
//! dispatch with a match.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, UnixStream},
};

/// Delegates `AsyncRead`/`AsyncWrite` to every variant.
macro_rules! delegate_io {
    ($ty:ident { $($variant:ident),+ }) => {
        impl AsyncRead for $ty {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

/// The client side of a session.
pub enum ClientStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// Plain unix socket.
    Unix(UnixStream),
    /// TLS over TCP (boxed: the TLS state is large).
    TlsTcp(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS over a unix socket (libpq never asks for it, other clients may).
    TlsUnix(Box<tokio_rustls::server::TlsStream<UnixStream>>),
}

delegate_io!(ClientStream {
    Tcp,
    Unix,
    TlsTcp,
    TlsUnix
});

impl ClientStream {
    /// Whether the client speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::TlsTcp(_) | Self::TlsUnix(_))
    }
}

/// The upstream side of a session.
pub enum UpstreamStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

delegate_io!(UpstreamStream { Tcp, Tls });

impl UpstreamStream {
    /// Whether the upstream connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}
