//! What one client connection is doing, and the deadlines that follow from it.
//!
//! hyper's own header timer starts whenever the connection waits for a request, so it cannot
//! tell a slowloris client (headers trickling in) from a kept-alive connection between
//! requests, and it has no body timeout at all. Here the connection's reads and requests are
//! tracked instead ([`Activity`]), and its watchdog closes it when:
//! - a new connection has not sent a whole request head within `header_timeout` of connecting,
//! - a kept-alive connection started a request (its first byte arrived) and the head is not
//!   complete within `header_timeout` of that byte,
//! - a kept-alive connection sent nothing for `idle_timeout` after its last response.
//!
//! A request's body must arrive within `body_timeout` of its head ([`DeadlineBody`]); the
//! handler then sees a read error and the server answers `408` and closes the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// "No time recorded" in the millisecond fields of [`Activity`].
const NONE: u64 = u64::MAX;

/// The timeouts one connection is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// Shared by a connection's reader, its request handling and its watchdog. Times are
/// milliseconds since `epoch` (tokio's clock, so tests can pause it).
#[derive(Debug)]
pub(super) struct Activity {
    epoch: Instant,
    accepted_ms: u64,
    /// Requests whose response is not sent yet.
    in_flight: AtomicU32,
    /// Requests answered on this connection.
    served: AtomicU64,
    /// When the last response was sent (or the connection accepted).
    idle_since_ms: AtomicU64,
    /// The first byte read while no request was in flight, [`NONE`] until one is.
    first_byte_ms: AtomicU64,
    /// Wakes the watchdog when a deadline may have moved.
    changed: Notify,
}

impl Activity {
    pub(super) fn new(epoch: Instant) -> Self {
        let now = millis_since(epoch, Instant::now());
        Self {
            epoch,
            accepted_ms: now,
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(now),
            first_byte_ms: AtomicU64::new(NONE),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        millis_since(self.epoch, Instant::now())
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.first_byte_ms.load(Ordering::Relaxed) == NONE
        {
            self.first_byte_ms.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// A request head is complete and its handling starts; dropping the returned guard (with
    /// the response body, once sent) ends it.
    pub(super) fn start_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        RequestGuard(self.clone())
    }

    /// Whether no request is being handled (the connection may be closed for another).
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// Eviction order at the connection cap: connections that never completed a request
    /// (idle sockets, slowloris) first, then the longest idle.
    pub(super) fn eviction_key(&self) -> (bool, u64) {
        (
            self.served.load(Ordering::Relaxed) > 0,
            self.idle_since_ms.load(Ordering::Relaxed),
        )
    }

    /// When the watchdog closes the connection, or `None` while a request is in flight.
    pub(super) fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        let first_byte = self.first_byte_ms.load(Ordering::Relaxed);
        let ms = if self.served.load(Ordering::Relaxed) == 0 {
            self.accepted_ms.saturating_add(as_ms(timeouts.header))
        } else if first_byte != NONE {
            first_byte.saturating_add(as_ms(timeouts.header))
        } else {
            self.idle_since_ms
                .load(Ordering::Relaxed)
                .saturating_add(as_ms(timeouts.idle))
        };
        self.epoch.checked_add(Duration::from_millis(ms))
    }

    /// Resolves when a deadline may have moved.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Ends a request's handling when dropped (also when the request is abandoned).
pub(super) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.served.fetch_add(1, Ordering::Relaxed);
        activity
            .idle_since_ms
            .store(activity.now_ms(), Ordering::Relaxed);
        activity.first_byte_ms.store(NONE, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        activity.changed.notify_one();
    }
}

fn millis_since(epoch: Instant, at: Instant) -> u64 {
    as_ms(at.saturating_duration_since(epoch))
}

fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The client socket, reporting reads to the connection's [`Activity`].
pub(super) struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> TrackedIo<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request counted as in flight until it is sent (dropped):
/// a connection is idle, and may be evicted or timed out, only once its answer is out.
pub(super) struct TrackedBody<B> {
    inner: B,
    _in_flight: RequestGuard,
}

impl<B> TrackedBody<B> {
    pub(super) fn new(inner: B, in_flight: RequestGuard) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body did not arrive within `body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(super) struct BodyTimeout;

/// A request body that fails once its deadline passes, however the bytes trickle in (a
/// timer per read would let one byte every few seconds keep a request open forever).
pub(super) struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    /// Created on the first read that has to wait: a body already buffered costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    /// `timed_out` is set when the deadline fires, so the server can answer 408.
    pub(super) fn new(inner: B, deadline: Instant, timed_out: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            deadline,
            sleep: None,
            timed_out,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_gets_the_header_timeout_from_accept() {
        let epoch = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        let activity = Arc::new(Activity::new(epoch));
        let accepted = Instant::now();
        assert_eq!(
            activity.deadline(TIMEOUTS),
            Some(accepted + TIMEOUTS.header)
        );
        // Bytes trickling in do not move it.
        tokio::time::advance(Duration::from_secs(4)).await;
        activity.on_read();
        assert_eq!(
            activity.deadline(TIMEOUTS),
            Some(accepted + TIMEOUTS.header)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_has_no_deadline_and_then_the_idle_one_starts() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let guard = activity.start_request();
        assert!(!activity.is_idle());
        assert_eq!(activity.deadline(TIMEOUTS), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(guard);
        let answered = Instant::now();
        assert!(activity.is_idle());
        assert_eq!(activity.deadline(TIMEOUTS), Some(answered + TIMEOUTS.idle));
        // The next request's first byte switches to the (shorter) header timeout from it.
        tokio::time::advance(Duration::from_secs(20)).await;
        activity.on_read();
        assert_eq!(
            activity.deadline(TIMEOUTS),
            Some(Instant::now() + TIMEOUTS.header)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn never_served_connections_are_evicted_first() {
        let served = Arc::new(Activity::new(Instant::now()));
        drop(served.start_request());
        tokio::time::advance(Duration::from_secs(1)).await;
        let fresh = Activity::new(Instant::now());
        assert!(fresh.eviction_key() < served.eviction_key());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_fails_at_its_deadline() {
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes>::new(4);
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut body = DeadlineBody::new(body, deadline, timed_out.clone());
        let feeder = tokio::spawn(async move {
            for _ in 0..100 {
                if sender.send_data(Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut got = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e,
                None => panic!("the body ended"),
            }
        };
        assert!(error.is::<BodyTimeout>());
        assert!(timed_out.load(Ordering::Relaxed));
        assert!((4..=6).contains(&got), "{got} bytes before the deadline");
        assert!(Instant::now() >= deadline);
        feeder.abort();
    }
}
