//! The HTTP service behind `alsoborrowed serve`: a title's ranked list as
//! JSON, the feed's metadata, the static feed files and health, all from a
//! release held in memory.
//!
//! - **One release per request.** The live [`Release`] sits behind an
//!   `ArcSwap`; a request loads the pointer once, so it sees one release
//!   whole. A watcher polls where `current` points and loads a new release
//!   beside the old one; only a release that loads completely is swapped in.
//!   A broken one is reported (one line, no title) and the old one stays.
//! - **Privacy by construction.** Nothing logs a path, title, address or
//!   user agent: the peer address is dropped at `accept` and the only
//!   record is [`app::Counters`]. No cookie is read or set. Every response
//!   carries `Referrer-Policy: no-referrer`, `X-Content-Type-Options:
//!   nosniff` and a Content-Security-Policy that allows nothing from
//!   another origin; CORS is granted only to configured origins.
//! - **Bounded cost.** HTTP/1.1 only, request head at most 16 KiB (431
//!   beyond), request target at most [`app::MAX_URI_BYTES`] (414), a
//!   deadline for the request head and the TLS handshake (slow clients), a
//!   cap on a connection's life, and a connection limit past which a
//!   connection gets a fixed 503 and is closed.
//!
//! Architecture invariant: `serve` depends on `alsoborrowed-feed` and the
//! HTTP stack only, never on the mining side: it can read nothing the
//! published feed does not hold.

pub mod app;
mod release;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alsoborrowed_feed::FeedError;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

pub use app::{Counters, State};
pub use release::{MAX_FILE_BYTES, Release};

/// Largest request head (request line and headers) read; hyper answers 431
/// beyond it.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most bytes of pages (`--pages`) held in memory.
pub const MAX_PAGES_BYTES: u64 = 64 << 20;

/// The fixed answer to a connection over the limit.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\
retry-after: 1\r\nconnection: close\r\nreferrer-policy: no-referrer\r\n\r\n";

/// What to serve, where and within which bounds.
#[derive(Debug, Clone)]
pub struct Config {
    /// The export directory (whose `current` is watched), a release
    /// directory or a feed directory.
    pub feed: PathBuf,
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Origins whose pages may read the API and feed (CORS); `*` for any.
    pub cors_origins: Vec<String>,
    /// A directory of pages served below `/` (e.g. a catalogue page with
    /// the widget), read once at start.
    pub pages: Option<PathBuf>,
    /// Most connections open at once; more get 503 and are closed.
    pub max_connections: usize,
    /// Deadline for a request head (and a TLS handshake) to arrive.
    pub header_timeout: Duration,
    /// A connection is closed (after its current request) once this old.
    pub connection_lifetime: Duration,
    /// How often to check whether `current` points to a new release.
    pub poll_interval: Duration,
    /// `max-age` of lists, metadata and feed files, in seconds.
    pub max_age_secs: u32,
    /// How long shutdown waits for open requests to finish.
    pub shutdown_grace: Duration,
}

impl Config {
    /// Defaults for serving `feed` on `listen`.
    pub fn new(feed: PathBuf, listen: SocketAddr) -> Config {
        Config {
            feed,
            listen,
            tls: None,
            cors_origins: Vec::new(),
            pages: None,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
            max_age_secs: 3600,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Errors from starting the server; each names a file or address, never a
/// title.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The feed could not be loaded.
    #[error("loading the feed: {0}")]
    Feed(#[from] FeedError),
    /// The listening socket could not be opened.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file (pages, certificate, key) could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key is unusable.
    #[error("{path}: {reason}")]
    Tls {
        /// The certificate or key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// A background task failed (a bug, reported rather than a panic).
    #[error("internal task failed: {0}")]
    Task(String),
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    router: Router,
    tls: Option<TlsAcceptor>,
    config: Config,
}

impl Server {
    /// Loads the release and the pages, prepares TLS and binds the socket.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        let feed = config.feed.clone();
        let release = tokio::task::spawn_blocking(move || Release::load(&feed))
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??;
        let pages = match &config.pages {
            Some(dir) => load_pages(dir)?,
            None => HashMap::new(),
        };
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let state = Arc::new(State::new(release, pages, config.max_age_secs));
        let router = app::router(state.clone(), &config.cors_origins);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Server {
            listener,
            state,
            router,
            tls,
            config,
        })
    }

    /// The address the socket is bound to (the port when `listen` had 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The shared state: the live release and the counters.
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open
    /// requests finish (up to `shutdown_grace`) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        self.run_threads(1, shutdown).await
    }

    /// As [`run`](Server::run), with `threads` accept loops on the one
    /// socket: this one on the caller's runtime and `threads - 1` more, each
    /// on a thread of its own with a single-threaded runtime that also runs
    /// the connections it accepted.
    ///
    /// Why not one multi-threaded runtime: on two cores shared with other
    /// work, its idle workers search each other's queues before parking and
    /// hand connections between threads; a thread per core that owns its
    /// connections, as nginx's workers do, leaves that CPU to the requests
    /// (benches/RESULTS.md, issue 13). The threads wait on the same
    /// listening socket, so the least busy one accepts the next connection.
    pub async fn run_threads(
        self,
        threads: usize,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            state,
            router,
            tls,
            config,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let max = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let acceptor = Acceptor {
            state: state.clone(),
            router,
            tls,
            limits: Limits {
                header_timeout: config.header_timeout,
                lifetime: config.connection_lifetime,
            },
            permits: Arc::new(Semaphore::new(max)),
            stop: stop_rx.clone(),
        };
        let (listener, others) = share_listener(listener, threads.saturating_sub(1))?;
        let mut workers = Vec::with_capacity(others.len());
        for (i, other) in others.into_iter().enumerate() {
            let acceptor = acceptor.clone();
            let mut done = done_rx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("serve-{}", i + 1))
                .spawn(move || -> Result<(), ServeError> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(ServeError::Runtime)?;
                    runtime.block_on(async move {
                        let listener =
                            TcpListener::from_std(other).map_err(|source| ServeError::Bind {
                                addr: config.listen,
                                source,
                            })?;
                        acceptor.accept_loop(listener, std::future::pending()).await;
                        // Keep running this thread's connections until
                        // every connection has ended or the grace is over.
                        let _ = done.wait_for(|done| *done).await;
                        Ok(())
                    })
                })
                .map_err(ServeError::Runtime)?;
            workers.push(worker);
        }
        let watcher = tokio::spawn(watch_releases(
            state,
            config.feed.clone(),
            config.poll_interval,
            stop_rx,
        ));
        let permits = acceptor.permits.clone();
        acceptor.accept_loop(listener, shutdown).await;
        let _ = stop_tx.send(true);
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(config.shutdown_grace, permits.acquire_many(all)).await;
        let _ = done_tx.send(true);
        let _ = watcher.await;
        let joined = tokio::task::spawn_blocking(move || {
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(ServeError::Task("an accept thread panicked".into()))
                    })
                })
                .collect::<Result<Vec<()>, ServeError>>()
        })
        .await
        .map_err(|e| ServeError::Task(e.to_string()))?;
        joined.map(drop)
    }
}

/// The listening socket and `extra` more handles to it, for accept loops
/// on other runtimes.
fn share_listener(
    listener: TcpListener,
    extra: usize,
) -> Result<(TcpListener, Vec<std::net::TcpListener>), ServeError> {
    if extra == 0 {
        return Ok((listener, Vec::new()));
    }
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let bind = |source| ServeError::Bind { addr, source };
    // `into_std` leaves the socket non-blocking, as every handle needs it.
    let std = listener.into_std().map_err(bind)?;
    let others = (0..extra)
        .map(|_| std.try_clone().map_err(bind))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((TcpListener::from_std(std).map_err(bind)?, others))
}

/// What every accept loop shares: the state, the routes, TLS, the limits,
/// the connection permits and the stop signal.
#[derive(Clone)]
struct Acceptor {
    state: Arc<State>,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Acceptor {
    /// Accepts connections until `shutdown` completes or the stop signal
    /// comes, each served on this runtime.
    async fn accept_loop(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut stop = self.stop.clone();
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                _ = stop.wait_for(|stopped| *stopped) => break,
                accepted = listener.accept() => accepted,
            };
            // The peer address is dropped here: nothing below can log it.
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                // Out of file descriptors and the like: wait instead of
                // spinning; the connection limit should prevent it.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let conn = connection(
                        stream,
                        self.router.clone(),
                        self.tls.clone(),
                        self.limits,
                        self.stop.clone(),
                    );
                    tokio::spawn(async move {
                        conn.await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    self.state
                        .counters
                        .refused_connections
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(refuse(stream));
                }
            }
        }
    }
}

/// Serves `config` with `threads` accept threads (default: one per core),
/// each with a single-threaded runtime, until SIGTERM or SIGINT, and returns
/// after a graceful shutdown. `ready` is called once the socket is bound.
pub fn run(
    config: Config,
    threads: Option<usize>,
    ready: impl FnOnce(&Server),
) -> Result<(), ServeError> {
    let threads = threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        ready(&server);
        server.run_threads(threads, shutdown_signal()).await
    })
}

/// Completes on SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    () = interrupt => {}
                }
            }
            Err(_) => interrupt.await,
        }
    }
    #[cfg(not(unix))]
    interrupt.await;
}

#[derive(Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    lifetime: Duration,
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(REFUSED).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => serve_io(stream, router, limits, stop).await,
        Some(acceptor) => {
            if let Ok(Ok(tls_stream)) =
                tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
            {
                serve_io(tls_stream, router, limits, stop).await;
            }
        }
    }
}

async fn serve_io<I>(io: I, router: Router, limits: Limits, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(limits.lifetime);
    tokio::pin!(lifetime);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|stopped| *stopped) => {}
        () = &mut lifetime => {}
    }
    // Finish the request in flight, then close; a client that does not read
    // its response gets one more header timeout.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.header_timeout, conn).await;
}

/// Polls where `path` resolves to and swaps in a new release once it loads
/// completely; a broken one is reported once and the old one kept.
async fn watch_releases(
    state: Arc<State>,
    path: PathBuf,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut failed: Option<PathBuf> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let probe = path.clone();
        let Ok(Some(dir)) =
            tokio::task::spawn_blocking(move || release::resolve_feed_dir(&probe)).await
        else {
            continue;
        };
        if dir == state.release.load().feed().dir() || failed.as_ref() == Some(&dir) {
            continue;
        }
        let target = dir.clone();
        match tokio::task::spawn_blocking(move || Release::load(&target)).await {
            Ok(Ok(new)) => {
                eprintln!(
                    "serving release {} ({} titles, updated {})",
                    new.id(),
                    new.feed().len(),
                    new.feed().index().updated
                );
                state.release.store(Arc::new(new));
                state.counters.reloads.fetch_add(1, Ordering::Relaxed);
                failed = None;
            }
            Ok(Err(e)) => {
                eprintln!(
                    "warning: still serving release {}: the new one is broken: {e}",
                    state.release.load().id()
                );
                state
                    .counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                failed = Some(dir);
            }
            Err(e) => {
                eprintln!("warning: loading the new release failed: {e}");
                state
                    .counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                failed = Some(dir);
            }
        }
    }
}

/// Reads every file below `dir` (dot files skipped, at most four levels and
/// [`MAX_PAGES_BYTES`] in all), keyed by its `/`-separated relative path.
fn load_pages(dir: &Path) -> Result<HashMap<String, release::StaticFile>, ServeError> {
    fn walk(
        dir: &Path,
        prefix: &str,
        depth: u32,
        total: &mut u64,
        out: &mut HashMap<String, release::StaticFile>,
    ) -> Result<(), ServeError> {
        let io = |source| ServeError::Io {
            path: dir.to_path_buf(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let key = format!("{prefix}{name}");
            if path.is_dir() {
                if depth < 4 {
                    walk(&path, &format!("{key}/"), depth + 1, total, out)?;
                }
                continue;
            }
            let file = release::read_file(&path)?;
            *total += file.body.len() as u64;
            if *total > MAX_PAGES_BYTES {
                return Err(ServeError::Io {
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("pages larger than {MAX_PAGES_BYTES} bytes in all"),
                    ),
                });
            }
            out.insert(key, file);
        }
        Ok(())
    }
    let mut out = HashMap::new();
    walk(dir, "", 0, &mut 0, &mut out)?;
    Ok(out)
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, reason: String| ServeError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
