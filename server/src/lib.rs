//! `shredvault serve`: one vault, many processes.
//!
//! The server owns the vault (one handle, opened privileged so that
//! privileged clients can be served; each call is then narrowed to its
//! client's grant) and serves the HTTP/JSON API of [`api`] on Unix
//! sockets and HTTPS. Every request is made by a client of the client list
//! ([`clients`]); every vault call runs as that client
//! ([`shredvault::Vault::acting_as`]), so its audit actor is the
//! authenticated name, never a label the caller chose.
//!
//! # Limits
//!
//! - At most `max_connections` connections at once; more wait in the
//!   listener's backlog until one closes.
//! - Request headers must arrive within `header_timeout` (a slow or idle
//!   connection is closed after it, keep-alive included); bodies are
//!   bounded by `max_body` bytes (`InvalidArgument`, 413, past it).
//! - HTTP/1.1 only.
//!
//! # Shutdown
//!
//! When the shutdown future given to [`serve`] completes (the CLI: SIGTERM
//! or SIGINT), listeners close, every connection is asked to finish after
//! its request in flight, and [`serve`] returns once all have; the caller
//! then closes the vault, which makes everything durable.
//!
//! # TLS
//!
//! `Listen::Tcp` serves HTTPS only (rustls, `tls`): the certificate and
//! key from PEM files, and with a client CA, client certificates required
//! and their subjects matched by `tls_subject` (a bearer token still wins
//! when one is sent). The handshake is bounded by `header_timeout`.
//!
//! # Several nodes
//!
//! [`serve_cluster`] serves a vault in PostgreSQL as one node of several:
//! the node holding the vault serves it, the others forward to it and take
//! over when it dies (see [`cluster`]).
//!
//! # Not yet
//!
//! Scan, policy replacement, root-key rotation and compaction: see the
//! README's server section.

pub mod api;
pub mod clients;
pub mod cluster;
pub mod openapi;
mod tls;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use shredvault::{Error, ErrorKind, Result, Vault};
use tokio::net::UnixListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub use clients::{Class, Client, Clients};
pub use cluster::ClusterOptions;
use cluster::Node;

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket at this path, made 0660.
    Unix(PathBuf),
    /// TCP with TLS (the options' `tls` must be set).
    Tcp(std::net::SocketAddr),
}

/// The server's TLS files (PEM): its certificate chain and key, and the
/// CA whose client certificates it asks for and checks, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl Listen {
    /// `unix:/path/to.sock`.
    pub fn parse(spec: &str) -> Result<Listen> {
        if let Some(path) = spec.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() && path.components().count() == 0 {
                return Err(Error::new(ErrorKind::InvalidArgument, "unix: needs a path"));
            }
            return Ok(Listen::Unix(path));
        }
        if let Some(addr) = spec.strip_prefix("tcp:") {
            use std::net::ToSocketAddrs;
            let addr = addr
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("--listen {spec:?}: expected tcp:HOST:PORT"),
                    )
                })?;
            return Ok(Listen::Tcp(addr));
        }
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("--listen {spec:?}: expected unix:PATH or tcp:HOST:PORT"),
        ))
    }
}

/// How long a scan waits for its reader to take the next line before the
/// scan is cut (it holds the vault's files; a compaction cuts it at once).
pub const SCAN_STALL: Duration = Duration::from_secs(60);

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: Vec<Listen>,
    pub clients: Clients,
    pub max_body: usize,
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Needed by `Listen::Tcp`.
    pub tls: Option<TlsFiles>,
    /// A file the erasure ledger is exported to continuously (within a
    /// second of each new entry, and once more at shutdown): see
    /// `Vault::export_ledger`. Put it off the machine (a mount of another
    /// one): a restore needs it.
    pub ledger_export: Option<std::path::PathBuf>,
}

impl ServeOptions {
    pub fn new(listen: Vec<Listen>, clients: Clients) -> ServeOptions {
        ServeOptions {
            listen,
            clients,
            max_body: 16 << 20,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            tls: None,
            ledger_export: None,
        }
    }
}

/// Who is at the other end of a connection.
#[derive(Clone, Debug)]
struct Peer {
    /// A Unix socket's peer uid.
    uid: Option<u32>,
    /// A TLS client certificate's subject, as `CN=...,O=...`.
    tls_subject: Option<String>,
}

/// A listening socket.
enum Listener {
    Unix(UnixListener, PathBuf),
    Tls(tokio::net::TcpListener, tokio_rustls::TlsAcceptor),
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// Binds a Unix socket at `path` (0660): a socket file left by a server
/// that is gone is replaced; one a live server answers on is `Locked`.
fn bind_unix(path: &PathBuf) -> Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("a server already listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path).map_err(io_err(format!("removing {}", path.display())))?;
    }
    // Bound and listening under a temporary name, made 0660, then renamed
    // into place: the path appears only once it accepts connections, and
    // never with the umask's mode.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener =
        UnixListener::bind(&tmp).map_err(io_err(format!("listening on {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err(format!("setting the mode of {}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(io_err(format!("moving the socket to {}", path.display())))?;
    Ok(listener)
}

/// Serves `vault` until `shutdown` completes, then waits for the calls in
/// flight and returns the vault (for the caller to close).
pub async fn serve(
    vault: Vault,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Vault> {
    let node = Arc::new(Node::single(vault));
    run(Arc::clone(&node), options, None, shutdown).await?;
    node.into_vault()?
        .ok_or_else(|| Error::new(ErrorKind::Internal, "the server lost its vault"))
}

/// Serves the vault `open` opens as a node of a cluster (see [`cluster`]):
/// a standby forwarding to the active node until it can open the vault
/// itself, then the active node. Returns the vault if this node was active
/// when `shutdown` completed (for the caller to close).
pub async fn serve_cluster(
    open: Arc<dyn Fn() -> Result<Vault> + Send + Sync>,
    cluster_options: ClusterOptions,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Option<Vault>> {
    cluster_options.check()?;
    let node = Arc::new(Node::standby(&cluster_options, options.tls.as_ref())?);
    run(
        Arc::clone(&node),
        options,
        Some((cluster_options, open)),
        shutdown,
    )
    .await?;
    node.into_vault()
}

/// What a cluster node runs beside its listeners.
type ClusterRun = (ClusterOptions, Arc<dyn Fn() -> Result<Vault> + Send + Sync>);

/// Serves `node` on the options' listeners until `shutdown` completes.
async fn run(
    node: Arc<Node>,
    options: ServeOptions,
    cluster_run: Option<ClusterRun>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    if options.listen.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "nothing to listen on (--listen unix:PATH)",
        ));
    }
    let mut listeners = Vec::new();
    for l in &options.listen {
        match l {
            Listen::Unix(path) => listeners.push(Listener::Unix(bind_unix(path)?, path.clone())),
            Listen::Tcp(addr) => {
                let Some(files) = &options.tls else {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "--listen tcp: needs --tls-cert and --tls-key",
                    ));
                };
                let acceptor = tls::acceptor(files)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(io_err(format!("listening on {addr}")))?;
                listeners.push(Listener::Tls(listener, acceptor));
            }
        }
    }
    let clients = Arc::new(options.clients.clone());
    let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let member = cluster_run.map(|(cluster, open)| {
        tokio::spawn(cluster::run(
            Arc::clone(&node),
            cluster,
            open,
            stop_rx.clone(),
        ))
    });
    let exporter = options.ledger_export.clone().map(|file| {
        let (node, mut stop) = (Arc::clone(&node), stop_rx.clone());
        tokio::spawn(async move {
            let mut exported = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => break,
                }
                if let Some(app) = node.app() {
                    export_ledger(&app, &file, &mut exported).await;
                }
            }
            if let Some(app) = node.app() {
                export_ledger(&app, &file, &mut exported).await;
            }
        })
    });
    let mut accepting = JoinSet::new();
    let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    for listener in listeners {
        let node = Arc::clone(&node);
        let clients = Arc::clone(&clients);
        let limit = Arc::clone(&limit);
        let mut stop = stop_rx.clone();
        let connections = Arc::clone(&connections);
        let opts = options.clone();
        accepting.spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = Arc::clone(&limit).acquire_owned() => p.expect("never closed"),
                    _ = stop.changed() => break,
                };
                let (node, clients, opts, stop2) = (
                    Arc::clone(&node),
                    Arc::clone(&clients),
                    opts.clone(),
                    stop.clone(),
                );
                match &listener {
                    Listener::Unix(l, _) => {
                        let accepted = tokio::select! {
                            s = l.accept() => s,
                            _ = stop.changed() => break,
                        };
                        let Ok((stream, _)) = accepted else {
                            // EMFILE and the like: wait a little, go on.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let peer = Peer {
                            uid: stream.peer_cred().ok().map(|c| c.uid()),
                            tls_subject: None,
                        };
                        connections.lock().await.spawn(async move {
                            connection(stream, peer, node, clients, opts, stop2).await;
                            drop(permit);
                        });
                    }
                    Listener::Tls(l, acceptor) => {
                        let accepted = tokio::select! {
                            s = l.accept() => s,
                            _ = stop.changed() => break,
                        };
                        let Ok((stream, _)) = accepted else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        connections.lock().await.spawn(async move {
                            // The handshake is bounded like a request's headers.
                            let handshake =
                                tokio::time::timeout(opts.header_timeout, acceptor.accept(stream))
                                    .await;
                            if let Ok(Ok(stream)) = handshake {
                                let peer = Peer {
                                    uid: None,
                                    tls_subject: tls::peer_subject(stream.get_ref().1),
                                };
                                connection(stream, peer, node, clients, opts, stop2).await;
                            }
                            drop(permit);
                        });
                    }
                }
            }
            if let Listener::Unix(l, path) = listener {
                drop(l);
                let _ = std::fs::remove_file(&path);
            }
        });
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while accepting.join_next().await.is_some() {}
    let mut conns = std::mem::take(&mut *connections.lock().await);
    while conns.join_next().await.is_some() {}
    if let Some(exporter) = exporter {
        let _ = exporter.await;
    }
    if let Some(member) = member {
        let _ = member.await;
    }
    Ok(())
}

/// Appends the ledger's new entries to `file` if it grew since the last
/// export (`exported`); a failure is logged and tried again next time.
async fn export_ledger(app: &Arc<api::App>, file: &std::path::Path, exported: &mut Option<u64>) {
    let app2 = Arc::clone(app);
    let file2 = file.to_path_buf();
    let last = *exported;
    let done = tokio::task::spawn_blocking(move || {
        app2.with(|v| {
            let now = v.ledger_entries();
            if Some(now) == last {
                return Ok(now);
            }
            v.export_ledger(&file2).map(|_| now)
        })?
    })
    .await;
    match done {
        Ok(Ok(n)) => *exported = Some(n),
        Ok(Err(e)) => eprintln!(
            "shredvault: exporting the erasure ledger to {}: {e}",
            file.display()
        ),
        Err(e) => eprintln!("shredvault: exporting the erasure ledger: {e}"),
    }
}

/// Serves one connection until it closes or the server stops.
async fn connection<S>(
    stream: S,
    peer: Peer,
    node: Arc<Node>,
    clients: Arc<Clients>,
    opts: ServeOptions,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let max_body = opts.max_body;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let node = Arc::clone(&node);
        let clients = Arc::clone(&clients);
        let peer = peer.clone();
        async move {
            let response = match authenticate(&clients, &req, &peer, &node) {
                Err(why) => unauthenticated(why),
                Ok((client, by_bearer)) => {
                    if too_big(&req, max_body) {
                        too_big_response(max_body)
                    } else {
                        let (parts, body) = req.into_parts();
                        let body = Body::new(http_body_util::Limited::new(body, max_body));
                        node.dispatch(Request::from_parts(parts, body), client, by_bearer)
                            .await
                    }
                }
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A body declared bigger than the limit (one sent without a length is cut
/// off by the limit while it is read, and the call fails then).
fn too_big(req: &Request<Incoming>, max: usize) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
}

fn too_big_response(max: usize) -> axum::response::Response {
    let body = serde_json::json!({
        "kind": "InvalidArgument",
        "message": format!("the request body is over the server's limit of {max} bytes"),
    });
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}

/// The client a request proves to be, and whether by a bearer token, or
/// why not (a `Forbidden`, 401). A cluster's standby may vouch for a
/// client with the node token (see [`cluster`]).
fn authenticate(
    clients: &Clients,
    req: &Request<Incoming>,
    peer: &Peer,
    node: &Node,
) -> std::result::Result<(Client, bool), &'static str> {
    if let Some(token) = req.headers().get(cluster::NODE_TOKEN) {
        let vouched = token.to_str().ok().is_some_and(|t| node.is_node_token(t));
        if !vouched {
            return Err("the node token is not this cluster's");
        }
        let name = req
            .headers()
            .get(cluster::FORWARDED_CLIENT)
            .and_then(|v| v.to_str().ok())
            .ok_or("a node's call names no client")?;
        return clients
            .named(name)
            .cloned()
            .map(|c| (c, false))
            .ok_or("the client a node vouches for is not in this node's client list");
    }
    let bearer = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) => Some(token.trim()),
            None => return Err("the Authorization header is `Bearer TOKEN`"),
        },
    };
    match clients.authenticate(bearer, peer.tls_subject.as_deref(), peer.uid) {
        Some(c) => Ok((c.clone(), bearer.is_some())),
        None => Err(if bearer.is_some() {
            "the token is no client's"
        } else {
            "no client of this server is this connection's user; send a token"
        }),
    }
}

fn unauthenticated(message: &str) -> axum::response::Response {
    let body = serde_json::json!({"kind": "Forbidden", "message": message});
    let mut r = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}
