//! The accept loop of every listener: a failed `accept` never ends it unless the socket itself
//! is gone, and no more than `max_connections` connections are open on it at once.
//!
//! hyper's own loop over `TcpListenerStream` ended the server at the first accept error: one
//! "Too many open files" (EMFILE) under a low file limit, and the port refused connections for
//! good while the process looked healthy. Here ([`Acceptor`]):
//!
//! - an error that says the machine or the peer is short of something ([`Failure::Resource`]:
//!   EMFILE, ENFILE, ENOMEM, ENOBUFS, and any error not known to be one of the others) is
//!   counted (`hooklog_accept_errors_total{listener}`), logged at most once a second
//!   ([`super::sampled`]), and waited out with a [`Backoff`] (5 ms doubling to 1 s, back to
//!   5 ms after the next success); the pending connection stays in the kernel's backlog;
//! - an error about one connection that died before it was accepted ([`Failure::Peer`]:
//!   ECONNABORTED, EPROTO, …) is counted and the loop goes on at once: a client must not be
//!   able to slow the loop down by resetting its own connections;
//! - an error that says the listening socket is unusable ([`Failure::Fatal`]: EBADF, EINVAL,
//!   ENOTSOCK, EOPNOTSUPP, EFAULT) ends the loop with that error, so the server future
//!   returns it and the daemon stops for a restart (src/lib.rs) instead of serving nothing.
//!
//! The cap: every accepted connection holds a permit of the listener's semaphore until it is
//! closed. With none left the loop does not call `accept` at all: new connections wait in the
//! kernel's backlog (and are accepted as soon as one closes, or time out at the client), while
//! every connection already accepted is served as before. `hooklog_open_connections{listener}`
//! counts the permits held.
//!
//! Each accepted connection ([`Conn`]) is also closed once it has been idle for the idle
//! timeout ([`IdleTimeout`]): hyper's own timers cover neither a keep-alive connection left
//! idle after its answer nor a client that stops reading.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use prometheus::{IntCounter, IntGauge};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::sampled::Sampler;
use crate::metrics::Metrics;

/// The first wait after a resource error.
pub const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest wait between two accepts while the errors go on.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per kind of event per listener in this period.
const LOG_PERIOD: Duration = Duration::from_secs(1);

/// What an accept error says about the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// One connection died between the handshake and `accept`: try the next one at once.
    Peer,
    /// The process or the machine is short of something (file descriptors, memory, buffers),
    /// or the error is not known: wait a little and try again.
    Resource,
    /// The listening socket is unusable: retrying cannot help.
    Fatal,
}

/// Classifies an error of `accept`.
pub fn classify(e: &std::io::Error) -> Failure {
    let Some(code) = e.raw_os_error() else {
        // Not from the kernel (tokio reports its own errors this way): nothing says the socket
        // is gone, so it is waited out like a resource error.
        return Failure::Resource;
    };
    match Errno::from_raw(code) {
        Errno::EBADF | Errno::EINVAL | Errno::ENOTSOCK | Errno::EOPNOTSUPP | Errno::EFAULT => {
            Failure::Fatal
        }
        // accept(2): "Linux accept() passes already-pending network errors on the new socket
        // as an error code from accept()"; each is about that one connection.
        Errno::ECONNABORTED
        | Errno::ECONNRESET
        | Errno::EPROTO
        | Errno::EPERM
        | Errno::EINTR
        | Errno::EAGAIN
        | Errno::ENETDOWN
        | Errno::ENOPROTOOPT
        | Errno::EHOSTDOWN
        | Errno::ENONET
        | Errno::EHOSTUNREACH
        | Errno::ENETUNREACH
        | Errno::ETIMEDOUT => Failure::Peer,
        _ => Failure::Resource,
    }
}

/// The wait before the next accept after resource errors: `BACKOFF_MIN`, doubled on each
/// error in a row up to `BACKOFF_MAX`, and back to the start after a success.
#[derive(Debug, Default)]
pub struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    /// The wait after one more error in a row.
    pub fn next_wait(&mut self) -> Duration {
        let wait = match self.last {
            None => BACKOFF_MIN,
            Some(last) => (last * 2).min(BACKOFF_MAX),
        };
        self.last = Some(wait);
        wait
    }

    /// An accept succeeded: the next error starts again from `BACKOFF_MIN`.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// The collectors of one listener.
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    accept_errors: IntCounter,
    open: IntGauge,
}

impl ListenerMetrics {
    /// The series of the listener named `name` (its `listener` label).
    pub fn new(metrics: &Metrics, name: &str) -> ListenerMetrics {
        ListenerMetrics {
            accept_errors: metrics.accept_errors.with_label_values(&[name]),
            open: metrics.open_connections.with_label_values(&[name]),
        }
    }
}

/// Produces the connections of one listener, under its cap; see the module header.
pub struct Acceptor {
    listener: TcpListener,
    name: Arc<str>,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    backoff: Backoff,
    metrics: ListenerMetrics,
    log: Sampler<&'static str>,
    /// Set after a fatal error was returned: the stream ends.
    ended: bool,
}

impl Acceptor {
    /// Accepts from `listener`, at most `max_connections` open at once (at least one), each
    /// closed after `idle_timeout` without traffic ([`IdleTimeout`]).
    pub fn new(
        listener: TcpListener,
        name: &str,
        max_connections: usize,
        idle_timeout: Duration,
        metrics: ListenerMetrics,
    ) -> Acceptor {
        Acceptor {
            listener,
            name: name.into(),
            slots: Arc::new(Semaphore::new(
                max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            idle_timeout,
            backoff: Backoff::default(),
            metrics,
            log: Sampler::new(LOG_PERIOD),
            ended: false,
        }
    }

    /// The next connection; `Some(Err(_))` once, when the socket is unusable, then `None`.
    pub async fn next(&mut self) -> Option<std::io::Result<Conn>> {
        if self.ended {
            return None;
        }
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(suppressed) = self.log.admit("cap", Instant::now()) {
                    tracing::warn!(
                        listener = %self.name,
                        max_connections = self.slots_total(),
                        times_since_last_line = suppressed,
                        "listener at server.max_connections: new connections wait in the \
                         kernel's backlog until one closes"
                    );
                }
                // The semaphore is never closed, so this waits for a permit and cannot fail;
                // were it closed, the stream would end like a fatal error.
                match self.slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => {
                        self.ended = true;
                        return Some(Err(std::io::Error::other("connection cap closed")));
                    }
                }
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, _peer)) => {
                    self.backoff.reset();
                    return Some(Ok(Conn::new(
                        stream,
                        self.idle_timeout,
                        permit,
                        self.metrics.open.clone(),
                    )));
                }
                Err(e) => {
                    self.metrics.accept_errors.inc();
                    match classify(&e) {
                        Failure::Fatal => {
                            tracing::error!(
                                listener = %self.name,
                                error = %e,
                                "the listening socket failed for good; the listener stops"
                            );
                            self.ended = true;
                            return Some(Err(e));
                        }
                        Failure::Peer => {
                            if let Some(suppressed) = self.log.admit("peer", Instant::now()) {
                                tracing::debug!(
                                    listener = %self.name,
                                    error = %e,
                                    times_since_last_line = suppressed,
                                    "a connection failed before it was accepted"
                                );
                            }
                        }
                        Failure::Resource => {
                            let wait = self.backoff.next_wait();
                            if let Some(suppressed) = self.log.admit("resource", Instant::now()) {
                                tracing::warn!(
                                    listener = %self.name,
                                    error = %e,
                                    retry_in_ms = wait.as_millis() as u64,
                                    times_since_last_line = suppressed,
                                    "cannot accept a connection; retrying (new connections \
                                     wait in the kernel's backlog meanwhile). EMFILE/ENFILE: \
                                     raise the open-file limit (LimitNOFILE) or lower \
                                     server.max_connections"
                                );
                            }
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
    }

    fn slots_total(&self) -> usize {
        // Only for the log line: the permits held plus the free ones are the cap.
        usize::try_from(self.metrics.open.get()).unwrap_or(0) + self.slots.available_permits()
    }

    /// The connections as the stream hyper's server takes.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = std::io::Result<Conn>> + Send + 'static {
        futures_util::stream::unfold(self, |mut acceptor| async move {
            let item = acceptor.next().await?;
            Some((item, acceptor))
        })
    }
}

/// Releases a connection's place under the cap when the connection is dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// An accepted connection: closed after its idle timeout, holding its place under the cap
/// until it is dropped.
pub struct Conn {
    io: IdleTimeout<TcpStream>,
    _slot: Slot,
}

impl Conn {
    fn new(
        stream: TcpStream,
        idle_timeout: Duration,
        permit: OwnedSemaphorePermit,
        open: IntGauge,
    ) -> Conn {
        open.inc();
        Conn {
            io: IdleTimeout::new(stream, idle_timeout),
            _slot: Slot {
                _permit: permit,
                open,
            },
        }
    }
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A connection closed (its next read or write fails with `TimedOut`) once nothing has been
/// read from or written to it for `timeout`.
///
/// Activity only records an [`Instant`](tokio::time::Instant); the timer is moved to the
/// real deadline only when it fires, so a busy connection does not touch the timer wheel
/// on every read.
pub struct IdleTimeout<T> {
    io: T,
    timeout: Duration,
    last_activity: tokio::time::Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<T> IdleTimeout<T> {
    /// Wraps `io`.
    pub fn new(io: T, timeout: Duration) -> IdleTimeout<T> {
        IdleTimeout {
            io,
            timeout,
            last_activity: tokio::time::Instant::now(),
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Called when the inner I/O is pending: an error once the connection has been idle
    /// for the whole timeout (and the waker registered with the timer otherwise).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_activity + self.timeout;
            if deadline <= tokio::time::Instant::now() {
                return Poll::Ready(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last_activity = tokio::time::Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.last_activity = tokio::time::Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.last_activity = tokio::time::Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e as i32)
    }

    #[test]
    fn the_backoff_doubles_from_5_ms_to_1_s_and_starts_again_after_a_success() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_wait(), BACKOFF_MIN);
    }

    #[test]
    fn running_out_of_files_or_memory_is_waited_out_and_a_dead_socket_is_fatal() {
        for e in [Errno::EMFILE, Errno::ENFILE, Errno::ENOMEM, Errno::ENOBUFS] {
            assert_eq!(classify(&os(e)), Failure::Resource, "{e}");
        }
        for e in [
            Errno::ECONNABORTED,
            Errno::EPROTO,
            Errno::EPERM,
            Errno::EINTR,
        ] {
            assert_eq!(classify(&os(e)), Failure::Peer, "{e}");
        }
        for e in [
            Errno::EBADF,
            Errno::EINVAL,
            Errno::ENOTSOCK,
            Errno::EOPNOTSUPP,
        ] {
            assert_eq!(classify(&os(e)), Failure::Fatal, "{e}");
        }
        // Unknown: retried, never taken for a dead socket.
        assert_eq!(classify(&os(Errno::EIO)), Failure::Resource);
        assert_eq!(
            classify(&std::io::Error::other("not from the kernel")),
            Failure::Resource
        );
    }

    #[tokio::test]
    async fn past_the_cap_the_next_connection_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let mut acceptor = Acceptor::new(
            listener,
            "test",
            2,
            Duration::from_secs(60),
            ListenerMetrics::new(&metrics, "test"),
        );
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let a1 = acceptor.next().await.unwrap().unwrap();
        let _a2 = acceptor.next().await.unwrap().unwrap();
        let open = metrics.open_connections.with_label_values(&["test"]);
        assert_eq!(open.get(), 2);
        // The third is connected (in the backlog) but not accepted while two are open.
        let third = tokio::time::timeout(Duration::from_millis(200), acceptor.next()).await;
        assert!(third.is_err(), "accepted past the cap");
        drop(a1);
        assert_eq!(open.get(), 1);
        let a3 = tokio::time::timeout(Duration::from_secs(5), acceptor.next())
            .await
            .expect("accepted once a place is free")
            .unwrap()
            .unwrap();
        assert_eq!(open.get(), 2);
        drop(a3);
        assert_eq!(open.get(), 1);
    }
}
