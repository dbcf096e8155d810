//! Several `serve` nodes on one vault in PostgreSQL (issue 19):
//! `shredvault serve VAULT --listen ... --advertise URL`.
//!
//! # Design: one active node, standbys that forward
//!
//! One node at a time is **active**: it holds the vault open, which takes
//! the store's advisory lock on the vault's schema (PostgreSQL decides who
//! has it, and frees it when the holder's session ends: a node killed
//! with SIGKILL frees it as soon as its connections close). It writes the
//! URL it advertises into the vault's schema (`shredvault_nodes`). Every
//! other node is a **standby**: it authenticates each call against its own
//! client list, then forwards it to the active node's URL and relays the
//! answer, byte for byte.
//!
//! Why not every node writing at once: the engine keeps state in its
//! process that every call relies on (the audit chain's head, the caches
//! of derived keys and of reads, the per-subject write locks, the key
//! pool). One engine over the database keeps each guarantee of a single
//! node with no distributed protocol per call: a write acknowledged by any
//! node is in the one engine every node's next read goes to; an erasure
//! acknowledged by any node is refused by every next read, with no cache
//! to invalidate anywhere else; the audit chain and the erasure ledger
//! have one writer; background work (purges, expiry runs and with them
//! the key epochs' end, the ledger's export) runs in one process. It is
//! the design HashiCorp Vault and OpenBao use in their HA mode. The cost:
//! the cluster's throughput is one node's, and a forwarded call makes one
//! more hop. What it buys is availability: a node can die, and the vault
//! stays served.
//!
//! # Failover
//!
//! A standby tries to open the vault every second (the attempt waits up
//! to 3 s on the lock). When the active node dies its lock is freed; the
//! first standby to take it opens the vault, whose open finishes whatever
//! the dead node left half done (the journal's puts, an erasure logged
//! but not applied, a purge, an epoch's end committed but its old key not
//! yet destroyed: the vault's crash stories), announces its URL and serves.
//! Meanwhile a call forwarded to the dead node fails with `Locked` (503):
//! unacknowledged, so nothing acknowledged is lost; the client retries.
//!
//! An active node checks every second that it still holds the lock; one
//! that lost it (the database restarted, its session was ended) stops at
//! once, exit status 75, without writing again: another node may hold the
//! vault now. Its supervisor restarts it, as a standby.
//!
//! # Who a forwarded call is
//!
//! A call with a bearer token is forwarded with it: the active node
//! authenticates it itself. A client the standby knows by its Unix uid or
//! TLS certificate cannot be proved again to the active node; the standby
//! vouches for it with the cluster's node token (`--cluster-token-file`,
//! the same file on every node): headers `x-shredvault-node-token` and
//! `x-shredvault-forwarded-client: NAME`, believed by the active node only
//! with the right token (SHA-256 compared in constant time), and stripped
//! from every call a client sends. Without a node token, such a client is
//! told (503) which node to connect to. Every node must have the same
//! client list.
//!
//! # Reaching the active node
//!
//! `--advertise unix:///abs/path.sock` (nodes on one host) or
//! `--advertise https://host:port` (one of the node's `tcp:` listeners;
//! the standbys check its certificate against `--cluster-ca`, and present
//! their own `--tls-cert` to an active node that asks for client
//! certificates). Connections to the active node are kept and reused.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::IntoResponse;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use shredvault::{Error, ErrorKind, Result, Vault};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::api::{self, App};
use crate::{Client, TlsFiles};

/// The node token's header: a standby vouching for its client.
pub(crate) const NODE_TOKEN: HeaderName = HeaderName::from_static("x-shredvault-node-token");
/// The client a standby vouches for.
pub(crate) const FORWARDED_CLIENT: HeaderName =
    HeaderName::from_static("x-shredvault-forwarded-client");

/// How a node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Where the other nodes reach this one when it is active:
    /// `unix:///abs/path.sock` or `https://host:port`.
    pub advertise: String,
    /// The vault's database (its `store` file's).
    pub store: String,
    /// The cluster's node token (the same on every node), if any.
    pub node_token: Option<Zeroizing<String>>,
    /// The CA the active node's certificate is checked against (an
    /// `https://` active node).
    pub cluster_ca: Option<PathBuf>,
}

impl ClusterOptions {
    /// Checks `advertise` names a Unix socket by absolute path or an
    /// `https://` address.
    pub fn check(&self) -> Result<()> {
        let ok = match (
            self.advertise.strip_prefix("unix://"),
            self.advertise.strip_prefix("https://"),
        ) {
            (Some(path), _) => path.starts_with('/'),
            (_, Some(rest)) => !rest.is_empty() && self.cluster_ca.is_some(),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "--advertise is unix:///abs/path.sock, or https://host:port with --cluster-ca, not {:?}",
                    self.advertise
                ),
            ))
        }
    }
}

/// What a node is now.
enum Role {
    Active {
        app: Arc<App>,
        router: axum::Router,
    },
    /// Forwarding to the node at this URL (none known yet: `Locked`).
    Standby(Option<String>),
}

/// A served vault's node: active (one process, see [`crate::serve`]) or
/// one of a cluster's.
pub(crate) struct Node {
    role: RwLock<Role>,
    forwarder: Option<Forwarder>,
    /// SHA-256 of the node token, for checking a standby's vouching.
    node_token: Option<[u8; 32]>,
}

impl Node {
    /// The only node: active with `vault`.
    pub fn single(vault: Vault) -> Node {
        let app = Arc::new(App::new(vault, crate::SCAN_STALL));
        Node {
            role: RwLock::new(Role::Active {
                router: api::router(Arc::clone(&app)),
                app,
            }),
            forwarder: None,
            node_token: None,
        }
    }

    /// A node of a cluster, a standby until it takes the vault.
    pub fn standby(cluster: &ClusterOptions, tls: Option<&TlsFiles>) -> Result<Node> {
        let digest = cluster
            .node_token
            .as_ref()
            .map(|t| sha256(t.trim().as_bytes()));
        Ok(Node {
            role: RwLock::new(Role::Standby(None)),
            forwarder: Some(Forwarder::new(cluster, tls)?),
            node_token: digest,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Role> {
        self.role.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Role> {
        self.role.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The vault's app, if this node is active.
    pub fn app(&self) -> Option<Arc<App>> {
        match &*self.read() {
            Role::Active { app, .. } => Some(Arc::clone(app)),
            Role::Standby(_) => None,
        }
    }

    /// Makes this node the active one, with `vault`.
    pub fn promote(&self, vault: Vault) {
        let app = Arc::new(App::new(vault, crate::SCAN_STALL));
        *self.write() = Role::Active {
            router: api::router(Arc::clone(&app)),
            app,
        };
    }

    /// Notes where the active node is (a standby).
    pub fn set_active(&self, url: Option<String>) {
        if let Role::Standby(known) = &mut *self.write() {
            *known = url;
        }
    }

    /// The vault back, for the caller to close (`None`: a standby).
    pub fn into_vault(self: Arc<Self>) -> Result<Option<Vault>> {
        let node = Arc::try_unwrap(self).map_err(|_| still_held())?;
        match node.role.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Role::Standby(_) => Ok(None),
            Role::Active { app, router } => {
                drop(router);
                Arc::try_unwrap(app)
                    .ok()
                    .and_then(App::into_vault)
                    .map(Some)
                    .ok_or_else(still_held)
            }
        }
    }

    /// Whether `token` is the cluster's node token.
    pub fn is_node_token(&self, token: &str) -> bool {
        self.node_token
            .is_some_and(|want| bool::from(want.ct_eq(&sha256(token.trim().as_bytes()))))
    }

    /// Serves `req` for `client`: here if active, else at the active node.
    /// `by_bearer`: the client proved itself with a bearer token (which
    /// goes along).
    pub async fn dispatch(
        &self,
        req: Request<Body>,
        client: Client,
        by_bearer: bool,
    ) -> axum::response::Response {
        use tower::ServiceExt;
        let target = match &*self.read() {
            Role::Active { router, .. } => Ok(router.clone()),
            Role::Standby(url) => Err(url.clone()),
        };
        match target {
            Ok(router) => {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(Arc::new(client));
                match router.oneshot(Request::from_parts(parts, body)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
            Err(None) => {
                unavailable("no node of the cluster serves the vault yet (failing over): try again")
            }
            Err(Some(url)) => match &self.forwarder {
                Some(f) => f.forward(&url, req, &client, by_bearer).await,
                None => unavailable("this node does not forward"),
            },
        }
    }
}

fn still_held() -> Error {
    Error::new(
        ErrorKind::Internal,
        "the vault is not the server's to return (a call holds it, or a compaction lost it)",
    )
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A 503 (`Locked`): the vault is not served from here right now.
fn unavailable(message: &str) -> axum::response::Response {
    let body = serde_json::json!({"kind": "Locked", "message": message});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// A standby's connections to the active node.
struct Forwarder {
    node_token: Option<Zeroizing<String>>,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Connections kept for reuse, by the URL they go to.
    idle: Mutex<Vec<(String, SendRequest<Body>)>>,
}

/// Connections kept per node.
const IDLE: usize = 64;

impl Forwarder {
    fn new(cluster: &ClusterOptions, tls: Option<&TlsFiles>) -> Result<Forwarder> {
        let connector = match &cluster.cluster_ca {
            Some(ca) => Some(crate::tls::connector(ca, tls)?),
            None => None,
        };
        Ok(Forwarder {
            node_token: cluster.node_token.clone(),
            tls: connector,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(String, SendRequest<Body>)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to `url`: an idle one ready for a request, or a new one.
    async fn sender(&self, url: &str) -> std::result::Result<SendRequest<Body>, String> {
        {
            let mut idle = self.idle();
            idle.retain(|(_, s)| !s.is_closed());
            if let Some(i) = idle.iter().position(|(u, s)| u == url && s.is_ready()) {
                return Ok(idle.swap_remove(i).1);
            }
        }
        let timeout = Duration::from_secs(5);
        let connect = async {
            if let Some(path) = url.strip_prefix("unix://") {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| e.to_string())?;
                handshake(stream).await
            } else if let Some(rest) = url.strip_prefix("https://") {
                let host = rest.trim_end_matches('/');
                let stream = tokio::net::TcpStream::connect(host)
                    .await
                    .map_err(|e| e.to_string())?;
                let name = host
                    .rsplit_once(':')
                    .map_or(host, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let name =
                    rustls::pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
                let tls = self
                    .tls
                    .as_ref()
                    .ok_or("no --cluster-ca for an https node")?;
                let stream = tls.connect(name, stream).await.map_err(|e| e.to_string())?;
                handshake(stream).await
            } else {
                Err(format!("{url} is no node URL"))
            }
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| "connecting timed out".to_string())?
    }

    async fn forward(
        &self,
        url: &str,
        req: Request<Body>,
        client: &Client,
        by_bearer: bool,
    ) -> axum::response::Response {
        let (mut parts, body) = req.into_parts();
        // Only a standby vouches: never a caller.
        parts.headers.remove(NODE_TOKEN);
        parts.headers.remove(FORWARDED_CLIENT);
        if !by_bearer {
            let (Some(token), Ok(name)) = (&self.node_token, HeaderValue::from_str(&client.name))
            else {
                return unavailable(&format!(
                    "this node is a standby and cannot vouch for a client without a token (no --cluster-token-file): connect to the active node at {url}"
                ));
            };
            let Ok(token) = HeaderValue::from_str(token.trim()) else {
                return unavailable("the cluster's node token is not a header value");
            };
            parts.headers.insert(NODE_TOKEN, token);
            parts.headers.insert(FORWARDED_CLIENT, name);
        }
        let mut sender = match self.sender(url).await {
            Ok(s) => s,
            Err(e) => {
                return unavailable(&format!(
                    "the active node at {url} cannot be reached ({e}): the cluster is failing over; try again"
                ))
            }
        };
        if sender.ready().await.is_err() {
            return unavailable(&format!(
                "the connection to the active node at {url} closed"
            ));
        }
        let sent = sender.send_request(Request::from_parts(parts, body)).await;
        match sent {
            Ok(response) => {
                let mut idle = self.idle();
                if idle.len() < IDLE {
                    idle.push((url.to_string(), sender));
                }
                response.map(Body::new)
            }
            Err(e) => unavailable(&format!(
                "the active node at {url} failed the call ({e}): it may be down; try again"
            )),
        }
    }
}

async fn handshake<S>(stream: S) -> std::result::Result<SendRequest<Body>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A standby's loop: tries to take the vault every second (`open`, which
/// is `Locked` while another node holds it), noting meanwhile where the
/// active node is; once it has the vault, announces this node and makes
/// it active; then checks every second that the lock is still held, and
/// stops the process (status 75) if not. Ends when `stop` changes.
pub(crate) async fn run(
    node: Arc<Node>,
    cluster: ClusterOptions,
    open: Arc<dyn Fn() -> Result<Vault> + Send + Sync>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let store = cluster.store.clone();
    let table = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || shredvault::postgres::NodeTable::connect(&store)).await
    };
    let table = match table {
        Ok(Ok(t)) => Arc::new(Mutex::new(t)),
        Ok(Err(e)) => {
            eprintln!("shredvault: the cluster's table in the database: {e}; stopping");
            std::process::exit(75);
        }
        Err(e) => {
            eprintln!("shredvault: {e}; stopping");
            std::process::exit(75);
        }
    };
    loop {
        if node.app().is_none() {
            // Where to forward meanwhile first (the attempt below waits
            // for the lock).
            let table2 = Arc::clone(&table);
            let active = tokio::task::spawn_blocking(move || {
                table2.lock().unwrap_or_else(|p| p.into_inner()).active()
            })
            .await;
            if let Ok(Ok(url)) = active {
                node.set_active(url.filter(|u| *u != cluster.advertise));
            }
            let open = Arc::clone(&open);
            match tokio::task::spawn_blocking(move || open()).await {
                Ok(Ok(vault)) => {
                    let announced = {
                        let table = Arc::clone(&table);
                        let url = cluster.advertise.clone();
                        tokio::task::spawn_blocking(move || {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs() as i64);
                            table.lock().unwrap_or_else(|p| p.into_inner()).announce(
                                &url,
                                std::process::id(),
                                now,
                            )
                        })
                        .await
                    };
                    if let Ok(Err(e)) = &announced {
                        eprintln!(
                            "shredvault: announcing this node: {e} (standbys may not find it)"
                        );
                    }
                    node.promote(vault);
                    eprintln!(
                        "shredvault: this node is now the active node ({})",
                        cluster.advertise
                    );
                }
                Ok(Err(e)) => {
                    if e.kind() != ErrorKind::Locked {
                        eprintln!("shredvault: opening the vault: {e}; trying again");
                    }
                }
                Err(e) => eprintln!("shredvault: opening the vault: {e}"),
            }
        } else if let Some(app) = node.app() {
            if !app.with(|v| v.still_locked()).unwrap_or(false) {
                eprintln!(
                    "shredvault: this node lost its lock on the vault (the database restarted, or its session ended): stopping at once; another node may serve the vault now"
                );
                std::process::exit(75);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
