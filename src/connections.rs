//! The accept loop under [`crate::server::Application::run_until`]: hyper driven directly rather
//! than through `axum::serve`, which has no head or idle deadline, no connection cap and a
//! graceful shutdown that waits forever for a client that never finishes its request head.
//!
//! Each connection has a watchdog, polled in the connection's own task, that knows whether a
//! request is in flight (from the service) and whether bytes arrived while none was (from the
//! socket). It gives every HTTP/1 request head a total deadline counted from the connection's
//! opening or from the head's first byte, and every connection with nothing in flight an idle
//! deadline. hyper's own `header_read_timeout` is not used: it starts as soon as a keep-alive
//! connection waits for its next request, so it would also close idle connections at the head
//! deadline and leave `idle_timeout_ms` without effect.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, http::Version};
use bytes::Bytes;
use hyper::{
    Request, Response,
    body::{Frame, Incoming, SizeHint},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::{JoinError, JoinSet},
    time::{Instant, sleep, sleep_until},
};
use tracing::{debug, info, warn};

use crate::config::ServerSettings;

/// After an accept error other than a peer giving up (out of descriptors, mostly), the loop
/// waits this long: retrying at once would spin on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The bounds on connections; the `server.*_ms` and `server.max_connections` settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) shutdown_grace: Duration,
}

impl From<&ServerSettings> for Limits {
    fn from(settings: &ServerSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
            max_connections: settings.max_connections,
            shutdown_grace: Duration::from_millis(settings.shutdown_grace_ms),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then gives the open connections
/// `limits.shutdown_grace` to finish their requests and closes whatever is left.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max_connections = fit_to_descriptor_limit(limits.max_connections);
    let permits = Arc::new(Semaphore::new(max_connections));
    let builder = Arc::new(builder(&limits));
    // Routes become services once here rather than on every request.
    let router: Router = router.with_state(());
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (permit, accepted) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = connections.join_next() => {
                report_join(joined);
                continue;
            }
            next = next_connection(&listener, &permits) => next,
        };
        match accepted {
            Ok((stream, remote)) => {
                connections.spawn(serve_connection(
                    stream,
                    remote,
                    ConnectionContext {
                        builder: builder.clone(),
                        router: router.clone(),
                        limits,
                        stopped: stopped.clone(),
                        _permit: permit,
                    },
                ));
            }
            // The peer gave up between its handshake and our accept: nothing to pause for.
            Err(error) if is_peer_error(&error) => {
                debug!(%error, "a connection was gone before it was accepted");
            }
            Err(error) => {
                warn!(
                    %error,
                    kind = ?error.kind(),
                    pause_ms = ACCEPT_ERROR_PAUSE.as_millis(),
                    "accepting a connection failed; pausing"
                );
                drop(permit);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }

    // New connections are refused from here on, rather than queued where nobody accepts them.
    drop(listener);
    info!(
        open_connections = connections.len(),
        grace_ms = limits.shutdown_grace.as_millis(),
        "shutting down: finishing the requests in flight"
    );
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while let Some(joined) = connections.join_next().await {
            report_join(joined);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            closed_connections = connections.len(),
            grace_ms = limits.shutdown_grace.as_millis(),
            "shutdown grace period over; closing the connections still open"
        );
        connections.shutdown().await;
    }
}

/// Waits for a free slot under the connection cap, then for a connection. Both waits are
/// cancel-safe, so the accept loop may drop this future for its other branches.
async fn next_connection(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, io::Result<(TcpStream, SocketAddr)>) {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    (permit, listener.accept().await)
}

fn is_peer_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

fn report_join(joined: Result<(), JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        warn!(%error, "a connection task panicked");
    }
}

fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // The head deadline is the watchdog's (see the module documentation); without a timer
    // hyper would only log that its default one has none.
    builder.http1().header_read_timeout(None);
    // Answers are small: one flat buffer and one write beat a vectored write of head and body.
    builder.http1().writev(false);
    // HTTP/2 streams are only dispatched whole, so a slow head cannot hold a request; a peer
    // that stops answering pings is dropped instead.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    builder
}

/// Raises the soft file-descriptor limit to the hard one and returns the connection cap that
/// fits in it: each connection holds a descriptor, and the upstream clients need some too.
fn fit_to_descriptor_limit(max_connections: usize) -> usize {
    let limit = match raise_descriptor_limit() {
        Ok(limit) => limit,
        Err(error) => {
            warn!(%error, "cannot read the file-descriptor limit; keeping the connection cap");
            return max_connections;
        }
    };
    let cap = cap_for_descriptors(max_connections, limit);
    if cap < max_connections {
        info!(
            max_connections,
            lowered_to = cap,
            descriptor_limit = limit,
            "connection cap lowered to 3/4 of the file-descriptor limit"
        );
    }
    cap
}

/// The connection cap for a soft descriptor limit (`None`: unlimited).
fn cap_for_descriptors(max_connections: usize, descriptor_limit: Option<u64>) -> usize {
    match descriptor_limit {
        Some(limit) => {
            let fits = usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX);
            max_connections.min(fits).max(1)
        }
        None => max_connections,
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force after.
#[cfg(unix)]
fn raise_descriptor_limit() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given, which outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            // macOS refuses an unlimited soft limit; the current one still works.
            let error = io::Error::last_os_error();
            warn!(%error, soft = limit.rlim_cur, hard = limit.rlim_max, "cannot raise the file-descriptor limit");
        }
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Ok(None);
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not on every unix.
    let soft = u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX);
    Ok(Some(soft))
}

#[cfg(not(unix))]
fn raise_descriptor_limit() -> io::Result<Option<u64>> {
    Ok(None)
}

/// What a connection task needs besides its socket.
struct ConnectionContext {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    limits: Limits,
    stopped: watch::Receiver<bool>,
    /// Held for the connection's life: its slot under `max_connections`.
    _permit: OwnedSemaphorePermit,
}

async fn serve_connection(stream: TcpStream, remote: SocketAddr, context: ConnectionContext) {
    let ConnectionContext {
        builder,
        router,
        limits,
        mut stopped,
        _permit,
    } = context;
    // Answers are small and written whole: Nagle would only delay them.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "cannot set TCP_NODELAY");
    }
    let watchdog = Arc::new(Watchdog::new());
    let io = TokioIo::new(WatchedIo {
        stream,
        watchdog: watchdog.clone(),
    });
    let service = ConnectionService {
        router: TowerToHyperService::new(router),
        remote,
        watchdog: watchdog.clone(),
    };
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    let mut closing_since = None;
    loop {
        // Nothing wakes this loop when a request starts or ends or bytes arrive: it looks at
        // the watchdog at `wake_at`, which is never after the deadline in force nor after any
        // deadline those events could set, and looks again until one has passed. Waking it on
        // every event cost each request several more polls of the connection.
        let wake_at = watchdog.wake_at(&limits, closing_since);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%remote, %error, "connection ended with an error");
                }
                return;
            }
            // An error means the accept loop is gone, which is a shutdown as well.
            _ = stopped.wait_for(|stopped| *stopped), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            () = sleep_until(wake_at) => match expired(&watchdog, &limits, closing_since) {
                None => {}
                Some(Expiry::Idle) => {
                    debug!(%remote, "closing an idle connection");
                    closing_since = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
                Some(Expiry::Head) => {
                    debug!(%remote, "closing a connection whose request head is late");
                    return;
                }
                Some(Expiry::Closing) => {
                    debug!(%remote, "closing a connection that did not close when asked");
                    return;
                }
            },
        }
    }
}

/// The deadline in force, when it has passed.
fn expired(watchdog: &Watchdog, limits: &Limits, closing_since: Option<Instant>) -> Option<Expiry> {
    watchdog
        .deadline(limits, closing_since)
        .filter(|(at, _)| *at <= Instant::now())
        .map(|(_, expiry)| expiry)
}

/// Why a connection's deadline closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// A request head did not arrive whole in time: dropped, there is nothing to finish.
    Head,
    /// Nothing in flight for the idle timeout: asked to close gracefully (a GOAWAY in HTTP/2).
    Idle,
    /// Asked to close when idle and still open, e.g. a peer that does not read its last answer.
    Closing,
}

/// What one connection is doing, as its service and socket report it.
struct Watchdog {
    state: Mutex<WatchState>,
}

struct WatchState {
    /// Requests dispatched whose response body is not yet sent (or dropped).
    in_flight: usize,
    /// When the connection last had nothing in flight: its opening, or its last response.
    waiting_since: Instant,
    /// When the first byte of the next HTTP/1 request head arrived, if one did.
    head_since: Option<Instant>,
    /// Whether a request was dispatched: until then the connection owes its first head.
    served: bool,
    /// HTTP/2 reads (pings, window updates) come without any request, so they start no head.
    http2: bool,
}

impl Watchdog {
    fn new() -> Self {
        Self {
            state: Mutex::new(WatchState {
                in_flight: 0,
                waiting_since: Instant::now(),
                head_since: None,
                served: false,
                http2: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, WatchState> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bytes_read(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && state.head_since.is_none() && !state.http2 {
            state.head_since = Some(Instant::now());
        }
    }

    fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.served = true;
        state.http2 |= version == Version::HTTP_2;
        state.head_since = None;
        drop(state);
        InFlight(self.clone())
    }

    fn request_ended(&self) {
        let mut state = self.state();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.waiting_since = Instant::now();
            state.head_since = None;
        }
    }

    /// When the connection's loop looks at the deadlines again: at the deadline in force, or
    /// sooner, so as never to be late for one that the events to come can set (each is at least
    /// the shorter timeout away: a head's counts from its first byte, the idle one from the end
    /// of the last request).
    fn wake_at(&self, limits: &Limits, closing_since: Option<Instant>) -> Instant {
        let soonest_new = Instant::now() + limits.header_read_timeout.min(limits.idle_timeout);
        match self.deadline(limits, closing_since) {
            Some((at, _)) => at.min(soonest_new),
            None => soonest_new,
        }
    }

    /// The next deadline and what it means; none while a request is in flight, which the
    /// request deadline bounds instead.
    fn deadline(
        &self,
        limits: &Limits,
        closing_since: Option<Instant>,
    ) -> Option<(Instant, Expiry)> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        if let Some(since) = closing_since {
            return Some((since + limits.header_read_timeout, Expiry::Closing));
        }
        if !state.served {
            return Some((
                state.waiting_since + limits.header_read_timeout,
                Expiry::Head,
            ));
        }
        match state.head_since {
            Some(since) => Some((since + limits.header_read_timeout, Expiry::Head)),
            None => Some((state.waiting_since + limits.idle_timeout, Expiry::Idle)),
        }
    }
}

/// One request in flight, from its dispatch until its response body is sent or dropped.
struct InFlight(Arc<Watchdog>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The socket, reporting to the watchdog when bytes arrive.
struct WatchedIo {
    stream: TcpStream,
    watchdog: Arc<Watchdog>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.watchdog.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router as one connection's hyper service: it gives handlers the peer's address as
/// `ConnectInfo<SocketAddr>` and tells the watchdog when requests start and end.
#[derive(Clone)]
struct ConnectionService {
    router: TowerToHyperService<Router>,
    remote: SocketAddr,
    watchdog: Arc<Watchdog>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = self.watchdog.request_started(request.version());
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let response = self.router.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight until hyper is done with it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
