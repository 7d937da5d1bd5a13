//! Flow's accept loop: every connection is bounded in number and in idle time.
//!
//! `axum::serve` keeps a connection open for as long as the client likes and accepts as
//! many as the process has file descriptors; about 20,000 idle sockets from one client
//! left no descriptor for anyone else (issue 14). Here:
//! - a connection whose request head has not fully arrived `header_timeout` after it
//!   opened, or after its previous response (an idle keep-alive), is closed;
//! - one client address (an IPv6 /64) holds at most `max_per_address` connections, and
//!   the process at most `max_connections`, WebSockets included (the count travels with
//!   the socket through the upgrade). A connection over a cap is answered once, 429
//!   `too_many_connections` or 503 `server_busy`, and closed.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue},
    Router,
};
use flow_app::error::{ApiError, ErrorCode};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use crate::error::status_of;

/// How many connections Flow keeps, and for how long an idle one.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Open connections of the whole process, WebSockets included.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 /64); 0: no per-address cap.
    pub max_per_address: usize,
    /// The longest a connection may take to send a request head, counted from when it
    /// opened or from its previous response.
    pub header_timeout: Duration,
}

/// File descriptors kept back from `max_connections` for the database, outbound calls,
/// files and the refusals themselves.
const RESERVED_FDS: u64 = 256;

/// Refused connections being answered at once; beyond this they are closed unanswered,
/// so that a flood cannot turn the refusals themselves into the exhaustion.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refused connection gets to send its request and read the answer.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);

impl ConnectionLimits {
    /// The process-wide cap that leaves [`RESERVED_FDS`] of `fd_limit` for everything else.
    pub fn max_connections_for(fd_limit: u64) -> usize {
        usize::try_from(fd_limit.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX)
    }
}

/// Raises the soft limit on open files to the hard limit, where the OS allows, and
/// returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The open-file limit in force now.
pub fn fd_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Serves `app` on `listener` within `limits` until `shutdown`, then waits for the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connections = Arc::new(Connections::default());
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = match make_service.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let slot = match connections.admit(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(refusal) => {
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(builder.clone(), stream, refusal, permit));
                }
                continue;
            }
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // Telling HTTP/1 from HTTP/2 waits for the first bytes with no timer of its
            // own: a connection that never sends one would stay open for good.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let io = TokioIo::new(Counted {
                stream,
                _slot: slot,
            });
            let service = TowerToHyperService::new(
                service
                    .map_request(|request: Request<hyper::body::Incoming>| request.map(Body::new)),
            );
            let connection = builder.serve_connection_with_upgrades(io, service);
            // A client that goes away or times out ends its connection; nothing to report.
            let _ = watcher.watch(connection.into_owned()).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A client that gave up during the handshake is its own business; anything else (too
/// many open files, above all) would spin the loop, so it pauses it briefly.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accept failed; pausing briefly");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Address,
    Process,
}

/// Answers one request on a refused connection with the refusal, then closes it.
async fn refuse(
    builder: Arc<Builder<TokioExecutor>>,
    stream: TcpStream,
    refusal: Refusal,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let error = match refusal {
        Refusal::Address => ApiError::new(
            ErrorCode::TooManyConnections,
            "too many open connections from this address; close some and try again",
        ),
        Refusal::Process => ApiError::new(
            ErrorCode::ServerBusy,
            "the server is at its connection limit; try again shortly",
        ),
    };
    let service = hyper::service::service_fn(move |_request| {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut response =
            crate::error::error_response(status_of(error.code), &error, Some(&request_id));
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            "x-request-id",
            HeaderValue::from_str(&request_id).expect("a UUID is a header value"),
        );
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_DEADLINE, connection).await;
}

/// Open connections, in all and per client network.
#[derive(Default)]
struct Connections {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_network: HashMap<IpAddr, usize>,
}

impl Connections {
    fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        limits: &ConnectionLimits,
    ) -> Result<Slot, Refusal> {
        let network = flow_app::login_guard::network_of(address);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= limits.max_connections {
            return Err(Refusal::Process);
        }
        let from_network = open.per_network.entry(network).or_default();
        if limits.max_per_address > 0 && *from_network >= limits.max_per_address {
            return Err(Refusal::Address);
        }
        *from_network += 1;
        open.total += 1;
        Ok(Slot {
            connections: self.clone(),
            network,
        })
    }
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    connections: Arc<Connections>,
    network: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(count) = open.per_network.get_mut(&self.network) {
            *count -= 1;
            if *count == 0 {
                open.per_network.remove(&self.network);
            }
        }
    }
}

/// A TCP stream that holds its connection's [`Slot`] for as long as it is open, also
/// after a WebSocket upgrade takes it over from the HTTP connection.
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit_and_sizes_the_connection_cap() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        // Start from the common default soft limit, below the hard one.
        rlimit::setrlimit(rlimit::Resource::NOFILE, 512.min(hard), hard).unwrap();
        let raised = raise_fd_limit();
        #[cfg(target_os = "linux")]
        assert_eq!(
            raised, hard,
            "Linux lets a process raise its soft limit to the hard one"
        );
        assert_eq!(fd_limit(), raised);
        assert_eq!(ConnectionLimits::max_connections_for(20_000), 19_744);
        // A tiny limit still lets a few clients in.
        assert_eq!(ConnectionLimits::max_connections_for(100), 16);
    }
}
