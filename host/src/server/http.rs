//! The HTTP server: an accept loop over hyper's HTTP/1 connections with a connection cap,
//! per-connection timeouts (see [`conn`](super::conn)) and a shutdown deadline.
//!
//! `axum::serve` has none of these: 200 slowloris connections stayed open indefinitely, idle
//! sockets could use up the open-files limit until `/healthz` was never accepted, and a
//! graceful shutdown waited forever on one half-sent request.
//!
//! At the cap a new connection is still accepted (the cap leaves file descriptors for it) and
//! the connection with no request in flight that has waited longest is closed for it — a
//! socket that never sent a request first. So idle or trickling sockets cannot lock out real
//! clients; only requests actually being handled hold their place.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::conn::{Activity, DeadlineBody, Timeouts, TrackedBody, TrackedIo};
use crate::api::ApiError;

/// Pause after an accept error other than a vanished client (e.g. out of file descriptors),
/// so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Timeouts and the connection cap of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to send a request head: from connecting, or on a kept-alive connection from the
    /// request's first byte.
    pub header_timeout: Duration,
    /// Time to send a request body, from the end of its head.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Client connections at once (before fitting it to the open-files limit).
    pub max_connections: usize,
    /// On shutdown, requests in flight get this long; then their connections are closed.
    pub shutdown_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The open connections, for the cap.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Slot>>,
    /// Signalled when a connection ends.
    freed: Notify,
}

struct Slot {
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

impl Connections {
    fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the connection that has waited longest without a request; false when every
    /// connection is handling one.
    fn evict_one(&self) -> bool {
        let mut open = self.lock();
        let victim = open
            .iter()
            .filter(|(_, slot)| slot.activity.is_idle())
            .min_by_key(|(_, slot)| slot.activity.eviction_key())
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from [`Connections`] when its task ends, however it ends.
struct SlotGuard {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
        self.connections.freed.notify_one();
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, with at most `max_connections`
/// client connections; then closes idle connections, gives requests in flight
/// `limits.shutdown_timeout`, and drops whatever is left.
///
/// # Errors
/// Never today; accept errors are logged and retried.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let epoch = Instant::now();
    let connections = Arc::new(Connections::default());
    let (stopping, stop_signal) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let mut shutdown = pin!(shutdown);
    'accept: loop {
        while tasks.try_join_next().is_some() {}
        // Make room before accepting: close an idle connection, or wait for one to end.
        while connections.count() >= max_connections && !connections.evict_one() {
            tokio::select! {
                () = &mut shutdown => break 'accept,
                () = connections.freed.notified() => {}
            }
        }
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_client_gone(&e) => continue,
                Err(e) => {
                    // Most likely out of file descriptors: free one if any is idle.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    connections.evict_one();
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let activity = Arc::new(Activity::new(epoch));
        let close = Arc::new(Notify::new());
        next_id = next_id.wrapping_add(1);
        connections.lock().insert(
            next_id,
            Slot {
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        let guard = SlotGuard {
            connections: connections.clone(),
            id: next_id,
        };
        let connection = Connection {
            router: router.clone(),
            peer,
            activity,
            close,
            stopping: stop_signal.clone(),
            limits,
        };
        tasks.spawn(async move {
            connection.run(stream).await;
            drop(guard);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let open = tasks.len();
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open,
            left = tasks.len(),
            "closing connections whose requests did not finish within the shutdown timeout"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Errors of one client that vanished between its connect and our accept.
fn is_client_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
    )
}

/// One client connection and what it needs.
struct Connection {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    /// Closes the connection at once (evicted at the cap).
    close: Arc<Notify>,
    stopping: watch::Receiver<bool>,
    limits: HttpLimits,
}

impl Connection {
    /// Serves the connection until the client closes it, a deadline passes, it is evicted,
    /// or the service stops.
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let timeouts = Timeouts {
            header: self.limits.header_timeout,
            idle: self.limits.idle_timeout,
        };
        let (router, activity, peer, body_timeout) = (
            self.router.clone(),
            self.activity.clone(),
            self.peer,
            self.limits.body_timeout,
        );
        let service = hyper::service::service_fn(move |request| {
            handle(
                request,
                router.clone(),
                activity.clone(),
                peer,
                body_timeout,
            )
        });
        let io = TokioIo::new(TrackedIo::new(stream, self.activity.clone()));
        let mut conn =
            pin!(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        let mut stopping = false;
        loop {
            let deadline = self.activity.deadline(timeouts);
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = expired => {
                    if self.activity.deadline(timeouts).is_some_and(|at| at <= Instant::now()) {
                        tracing::debug!(peer = %self.peer, "closing a connection past its header or idle timeout");
                        return;
                    }
                }
                () = self.activity.changed() => {}
                () = self.close.notified() => {
                    tracing::debug!(peer = %self.peer, "closing an idle connection for a new one (connection cap)");
                    return;
                }
                _ = self.stopping.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    if self.activity.is_idle() {
                        return;
                    }
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One request: counted in flight until its response is sent, its body under a deadline,
/// the peer address available to handlers (`ConnectInfo`).
async fn handle(
    request: Request<Incoming>,
    router: Router,
    activity: Arc<Activity>,
    peer: SocketAddr,
    body_timeout: Duration,
) -> Result<Response<TrackedBody<axum::body::Body>>, Infallible> {
    let in_flight = activity.start_request();
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + body_timeout;
    let mut request = request
        .map(|body| axum::body::Body::new(DeadlineBody::new(body, deadline, timed_out.clone())));
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
        // Whatever the handler made of the failed read, the answer is a 408, and the
        // connection (with part of a body still unread) is closed after it.
        let mut response = ApiError::RequestTimeout.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        response
    };
    Ok(response.map(|body| TrackedBody::new(body, in_flight)))
}
