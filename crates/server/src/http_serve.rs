//! Serving the client API with connection discipline: at most `client_connections_max`
//! connections at once (one more is accepted and closed at once, which costs a descriptor for a
//! moment, not a task), request headers read within `client_header_timeout` (a slowloris client
//! is cut off), and a connection closed after `client_idle_timeout` without a byte either way.
//! Accept errors (such as running out of descriptors) are logged once per interval with a count,
//! and accepting pauses briefly instead of spinning.
//!
//! Invariant: every open client connection holds a permit of the connection semaphore, released
//! when the connection ends; so with `descriptors_reserved` kept out of the bound, the WAL and the
//! snapshots can always open their files.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::log_limit::LogLimit;

/// How often refused connections and accept errors are summarized in the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// HTTP/2 connections (gRPC) are pinged this often, so an idle watch stream keeps its connection
/// (a ping is traffic for the idle timeout) and a vanished client is noticed.
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// A ping not answered within this closes the connection.
const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long accepting pauses after an accept error (out of descriptors, say).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The bounds a listener enforces.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub connections_max: usize,
    /// Time to read a request's headers.
    pub header_timeout: Duration,
    /// Time a connection may stay without a byte read or written.
    pub idle_timeout: Duration,
}

/// Serves `http` and `grpc` (requests whose content type is `application/grpc...`) on
/// `listener`, over TLS when `tls` is given (its handshake bounded by the header timeout), until
/// `stop` fires, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    http: Router,
    grpc: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    stop: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(HTTP2_KEEP_ALIVE_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut refusals = LogLimit::new("client connections refused", REFUSAL_LOG_INTERVAL);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                refusals.note(&format!("accept failed: {error}"));
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refusals.note(&format!(
                "refused: {} client connections open (client_connections_max)",
                limits.connections_max
            ));
            drop(stream);
            continue;
        };
        let (http, grpc) = (http.clone(), grpc.clone());
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(client));
                let grpc_call = request
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                let router = if grpc_call {
                    grpc.clone()
                } else {
                    http.clone()
                };
                router.oneshot(request)
            },
        ));
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => {
                    let io = TokioIo::new(IdleStream::new(stream, limits.idle_timeout));
                    let connection = builder.serve_connection_with_upgrades(io, service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
                Some(tls) => {
                    let accepted = tokio::time::timeout(limits.header_timeout, tls.accept(stream));
                    let stream = match accepted.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%client, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let io = TokioIo::new(IdleStream::new(stream, limits.idle_timeout));
                    let connection = builder.serve_connection_with_upgrades(io, service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

/// A stream that fails with `TimedOut` once no byte went either way for `idle`.
struct IdleStream<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleStream<S> {
    fn new(inner: S, idle: Duration) -> Self {
        IdleStream {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Progress was made: the idle clock starts again.
    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Nothing moved: has the idle time run out?
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client connection idle too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                self.touch();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                self.touch();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
