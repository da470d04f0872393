//! Connections a fake server can break on purpose, for the fake Ollama and the fake Hub.
//!
//! A real server's connection can drop mid-request; the fakes reproduce that by serving through
//! a [`KillListener`]: each accepted connection comes with a [`Conn`] (handed to handlers as axum
//! `ConnectInfo`) whose [`Conn::kill`] makes every later read and write on that socket fail with
//! `ConnectionReset`. Each connection also carries the listener's `tag` (the fake Hub tells its
//! Hub origin from its storage origin by it).
//!
//! ```no_run
//! # async fn serve(app: axum::Router, listener: tokio::net::TcpListener) {
//! use fake_conn::{Conn, KillListener};
//! let listener = KillListener::new(listener, ());
//! axum::serve(listener, app.into_make_service_with_connect_info::<Conn<()>>())
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What a handler knows of its connection: the switch that breaks it, and the listener's tag.
#[derive(Debug, Clone)]
pub struct Conn<T> {
    kill: Arc<AtomicBool>,
    /// The tag of the listener that accepted the connection.
    pub tag: T,
}

impl<T> Conn<T> {
    /// Breaks the connection: from now on every read and write on it fails.
    pub fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

impl<T: Clone + Send + Sync + 'static> Connected<IncomingStream<'_, KillListener<T>>> for Conn<T> {
    fn connect_info(stream: IncomingStream<'_, KillListener<T>>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose connections can be broken through their [`Conn`].
pub struct KillListener<T> {
    inner: TcpListener,
    tag: T,
}

impl<T> KillListener<T> {
    /// Serves `inner`'s connections, each tagged with `tag`.
    pub fn new(inner: TcpListener, tag: T) -> Self {
        KillListener { inner, tag }
    }
}

impl<T: Clone + Send + Sync + 'static> Listener for KillListener<T> {
    type Io = KillIo;
    type Addr = Conn<T>;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) => {
                    let kill = Arc::new(AtomicBool::new(false));
                    let io = KillIo {
                        inner: stream,
                        kill: Arc::clone(&kill),
                    };
                    let tag = self.tag.clone();
                    return (io, Conn { kill, tag });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Conn {
            kill: Arc::new(AtomicBool::new(false)),
            tag: self.tag.clone(),
        })
    }
}

/// An accepted socket that fails every operation once its connection was killed.
pub struct KillIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl KillIo {
    fn killed(&self) -> Option<io::Error> {
        self.kill.load(Ordering::SeqCst).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the fake server dropped the connection",
            )
        })
    }
}

impl AsyncRead for KillIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
