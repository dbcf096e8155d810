//! `shredvault bench --server`: the served vault beside its peer,
//! PostgreSQL, in one run, with 1 KiB values.
//!
//! PostgreSQL is a throw-away cluster made from the installed binaries
//! (`initdb`, `pg_ctl`; as the `postgres` user when run as root), on a
//! Unix socket in a temporary directory, fsync on; pgbench drives it with
//! durable 1 KiB inserts and point selects of a 1 KiB row. Where the
//! binaries are missing, the PostgreSQL lines say so and are skipped.
//!
//! The vault is served on a Unix socket in the same process (a tokio
//! runtime of its own), and driven by 16 connections from two threads, as
//! pgbench -j 2 drives its 16: 16 writers doing durable puts, then 16
//! readers doing gets for a purpose (purpose checks, decryption and the
//! audit on). In-process figures beside them: durable puts from 1 and 16
//! threads, gets from one thread.
//!
//! With the records in PostgreSQL the vault is served by two nodes of a
//! cluster (`shredvault_server::cluster`: one active, one standby that
//! forwards), both in this process on sockets of their own, the clients
//! spread over both; the root key is then in a token (`--root-key`, or a
//! throw-away SoftHSM2 token made here), as a cluster's keys need.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use hyper::body::Bytes;
use hyper::Method;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shredvault::postgres::Throwaway;
use shredvault::{Error, ErrorKind, Policy, RecordId, RootKey, SubjectId, Vault, VaultOptions};

const VALUE: usize = 1024;
const CLIENTS: usize = 16;

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
    v.resize(VALUE - 2, b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// Runs `f(thread, stop)` on `threads` threads for `secs`; the operations
/// per second, counted by `f`'s return.
fn timed<F>(threads: usize, secs: f64, f: F) -> Result<f64, Error>
where
    F: Fn(usize, &AtomicBool) -> Result<usize, Error> + Sync,
{
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let done = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (f, stop) = (&f, &stop);
                scope.spawn(move || f(t, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::SeqCst);
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread panicked"))
            .sum::<Result<usize, Error>>()
    })?;
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// The PostgreSQL figures: (insert/s from 1 and 16 clients, select/s
/// from 1 and 16), or why there are none.
fn postgres(pg: &Throwaway, dir: &Path, secs: u64) -> Result<[f64; 4], String> {
    let rows = 20_000;
    pg.psql("CREATE TABLE kv (id bigserial PRIMARY KEY, v bytea NOT NULL)")?;
    pg.psql(&format!(
        "INSERT INTO kv (v) SELECT convert_to(repeat('x', {VALUE}), 'UTF8') FROM generate_series(1, {rows})"
    ))?;
    let insert = dir.join("insert.sql");
    std::fs::write(
        &insert,
        format!("INSERT INTO kv (v) VALUES (convert_to(repeat('y', {VALUE}), 'UTF8'));\n"),
    )
    .map_err(|e| e.to_string())?;
    let select = dir.join("select.sql");
    std::fs::write(
        &select,
        format!("\\set id random(1, {rows})\nSELECT v FROM kv WHERE id = :id;\n"),
    )
    .map_err(|e| e.to_string())?;
    Ok([
        pg.pgbench(&insert, 1, secs)?,
        pg.pgbench(&insert, CLIENTS, secs)?,
        pg.pgbench(&select, 1, secs)?,
        pg.pgbench(&select, CLIENTS, secs)?,
    ])
}

/// The SoftHSM2 modules looked for.
const SOFTHSM: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// A root key for a cluster: the object `uri` names (made if missing), or
/// one in a throw-away SoftHSM2 token in `dir`; or why there is none.
fn cluster_root(dir: &Path, uri: Option<&str>) -> Result<RootKey, String> {
    if let Some(uri) = uri {
        return match RootKey::create_in_token(uri) {
            Ok(k) => Ok(k),
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {
                RootKey::from_uri(uri).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
    }
    let module = SOFTHSM
        .iter()
        .find(|m| Path::new(m).exists())
        .ok_or("SoftHSM2 is not installed and no --root-key pkcs11:... was given")?;
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| e.to_string())?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let pin = dir.join("pin");
    std::fs::write(&pin, "1234\n").map_err(|e| e.to_string())?;
    let made = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "bench"])
        .args(["--pin", "1234", "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .map_err(|e| format!("softhsm2-util: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "softhsm2-util: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    // This process's token library reads the configuration at its first
    // use, which is below.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    RootKey::create_in_token(&format!(
        "pkcs11:token=bench;object=bench-root?module-path={module}&pin-source=file:{}",
        pin.display()
    ))
    .map_err(|e| e.to_string())
}

pub fn run(
    json_out: bool,
    secs: f64,
    store: Option<&str>,
    root_uri: Option<&str>,
    nodes: usize,
) -> Result<(), Error> {
    if !(1..=2).contains(&nodes) {
        return Err(Error::new(ErrorKind::InvalidArgument, "--nodes is 1 or 2"));
    }
    let dir = tempfile::tempdir().map_err(io("a temporary directory"))?;
    let say = |what: &str| {
        if !json_out {
            eprintln!("bench --server: {what}");
        }
    };
    say("PostgreSQL (pgbench)");
    let cluster = Throwaway::start(dir.path());
    let pg = match &cluster {
        Ok(c) => postgres(c, dir.path(), secs.ceil() as u64),
        Err(why) => Err(why.clone()),
    };
    if let Err(why) = &pg {
        say(&format!("PostgreSQL lines skipped: {why}"));
    }
    // Where the vault keeps its records.
    let store = match store {
        None => None,
        Some("postgres") => match &cluster {
            Ok(c) => Some(shredvault::postgres::fresh_schema(c, "bench")),
            Err(why) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("--store postgres needs the bench's PostgreSQL: {why}"),
                ))
            }
        },
        Some(url) => Some(url.to_string()),
    };
    let store_name = if store.is_some() { "postgres" } else { "sled" };
    // Records in PostgreSQL: two nodes, if a token root key can be had.
    let root = match &store {
        None => Ok(RootKey::generate()?),
        Some(_) => cluster_root(dir.path(), root_uri),
    };
    let (root, nodes) = match root {
        Ok(r) if store.is_some() => (r, nodes),
        Ok(r) => (r, 1),
        Err(why) => {
            say(&format!("one node only: {why}"));
            (RootKey::generate()?, 1)
        }
    };

    // ---- in-process: durable puts from 1 and 16 threads.
    say("in-process durable puts");
    let policy = Policy::parse(
        include_str!("../../example-policy.toml"),
        "example-policy.toml",
    )?;
    let path = dir.path().join("vault");
    let options = VaultOptions {
        privileged: true,
        actor: Some("bench".into()),
        store: store.clone(),
        ..VaultOptions::default()
    };
    let v = Vault::open_with(&path, &root, Some(policy), options.clone())?;
    let data: Vec<Vec<u8>> = (0..64).map(value).collect();
    let put_1 = {
        let s = v.create_subject(&[])?;
        timed(1, secs, |_, stop| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                v.put(&s, "account", &data[n % data.len()])?;
                n += 1;
            }
            Ok(n)
        })?
    };
    let owners: Vec<SubjectId> = (0..CLIENTS)
        .map(|_| v.create_subject(&[]))
        .collect::<Result<_, _>>()?;
    let put_16 = timed(CLIENTS, secs, |t, stop| {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            v.put(&owners[t], "account", &data[n % data.len()])?;
            n += 1;
        }
        Ok(n)
    })?;

    // ---- served: 16 clients (over two nodes with the records in
    // PostgreSQL).
    say(&format!(
        "served durable puts and gets, 16 clients, {nodes} node{}",
        if nodes == 1 { "" } else { "s" }
    ));
    let sockets: Vec<std::path::PathBuf> = (0..nodes)
        .map(|i| dir.path().join(format!("sv{i}.sock")))
        .collect();
    let token = "bench-token";
    let digest = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ));
    let clients = shredvault_server::Clients::parse(&format!(
        "[clients.bench]\ntoken_sha256 = \"{digest}\"\noperations = [\"read\", \"write\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\n"
    ))?;
    let serve_options = |socket: &Path| {
        shredvault_server::ServeOptions::new(
            vec![shredvault_server::Listen::Unix(socket.to_path_buf())],
            clients.clone(),
        )
    };
    let runtime = tokio::runtime::Runtime::new().map_err(io("starting the server"))?;
    let wait_for = |socket: &Path| {
        for _ in 0..500 {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    if nodes == 1 {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop_tx);
        let serving = shredvault_server::serve(v, serve_options(&sockets[0]), async {
            let _ = stop_rx.await;
        });
        servers.push(runtime.spawn(async move { serving.await.map(Some) }));
        wait_for(&sockets[0]);
    } else {
        // The first node takes the vault (closed here first), the second
        // stays a standby and forwards.
        v.close()?;
        let url = store.clone().expect("two nodes only on PostgreSQL");
        let nodes_table = shredvault::postgres::NodeTable::connect(&url)?;
        for (i, socket) in sockets.iter().enumerate() {
            let (path, root, options) = (path.clone(), root.clone(), options.clone());
            let open: Arc<dyn Fn() -> Result<Vault, Error> + Send + Sync> = Arc::new(move || {
                Vault::open_with(
                    &path,
                    &root,
                    None,
                    VaultOptions {
                        store: None,
                        ..options.clone()
                    },
                )
            });
            let advertise = format!("unix://{}", socket.display());
            let cluster = shredvault_server::ClusterOptions {
                advertise: advertise.clone(),
                store: url.clone(),
                node_token: None,
                cluster_ca: None,
            };
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop_tx);
            let serving =
                shredvault_server::serve_cluster(open, cluster, serve_options(socket), async {
                    let _ = stop_rx.await;
                });
            servers.push(runtime.spawn(serving));
            wait_for(socket);
            if i == 0 {
                // Active before the second node starts.
                let deadline = Instant::now() + Duration::from_secs(30);
                while nodes_table.active()?.as_deref() != Some(advertise.as_str()) {
                    if Instant::now() > deadline {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            "the bench's first node did not become active",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // The standby knows where to forward once it has read the table.
        std::thread::sleep(Duration::from_millis(1500));
    }
    // The clients: 16 connections driven from 2 threads, as pgbench -j 2
    // drives its 16 (each connection one request after another).
    let paths: Vec<String> = owners
        .iter()
        .map(|o| format!("/v1/subjects/{o}/records"))
        .collect();
    let bodies: Vec<Bytes> = data
        .iter()
        .map(|d| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(d);
            Bytes::from(json!({"category": "account", "data": b64}).to_string())
        })
        .collect();
    let (served_put, answers) = drive(&sockets, token, secs, true, move |t, n| {
        (
            Method::POST,
            paths[t].clone(),
            bodies[n % bodies.len()].clone(),
        )
    })?;
    let ids: Vec<RecordId> = answers
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .filter_map(|v| v["record"].as_str().and_then(|r| RecordId::parse(r).ok()))
        .collect();
    if ids.is_empty() {
        return Err(Error::new(ErrorKind::Internal, "no served put was made"));
    }
    let ids = Arc::new(ids);
    let get_ids = Arc::clone(&ids);
    let (served_get, _) = drive(&sockets, token, secs, false, move |t, n| {
        let r = &get_ids[(t * 7919 + n * 104_729) % get_ids.len()];
        (
            Method::GET,
            format!("/v1/records/{r}?purpose=billing"),
            Bytes::new(),
        )
    })?;
    let next = AtomicUsize::new(0);
    let pick = || {
        let i = next.fetch_add(7919, Ordering::Relaxed);
        &ids[i % ids.len()]
    };
    for stop in stops {
        let _ = stop.send(());
    }
    let mut v = None;
    for server in servers {
        let node = runtime
            .block_on(server)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("the server: {e}")))??;
        v = v.or(node);
    }
    let v = v.ok_or_else(|| Error::new(ErrorKind::Internal, "no node held the vault"))?;

    // ---- in-process gets, one thread.
    say("in-process gets");
    let get_1 = timed(1, secs, |_, stop| {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            std::hint::black_box(v.get(pick(), "billing")?);
            n += 1;
        }
        Ok(n)
    })?;
    v.close()?;

    let ratio = |a: f64, b: Option<f64>| b.map(|b| a / b);
    let pg_fig = pg.as_ref().ok();
    let out = json!({
        "value_bytes": VALUE,
        "clients": CLIENTS,
        "nodes": nodes,
        "store": store_name,
        "seconds_per_figure": secs,
        "server_get_vs_pg_select": ratio(served_get, pg_fig.map(|p| p[3])),
        "server_put_durable_vs_pg_insert": ratio(served_put, pg_fig.map(|p| p[1])),
        "durable_put_16_vs_1": put_16 / put_1,
        "server_get_vs_inprocess": served_get / get_1,
        "raw": {
            "server_put_durable_16_per_s": served_put,
            "server_get_16_per_s": served_get,
            "inprocess_put_durable_1_per_s": put_1,
            "inprocess_put_durable_16_per_s": put_16,
            "inprocess_get_1_per_s": get_1,
            "pg_insert_1_per_s": pg_fig.map(|p| p[0]),
            "pg_insert_16_per_s": pg_fig.map(|p| p[1]),
            "pg_select_1_per_s": pg_fig.map(|p| p[2]),
            "pg_select_16_per_s": pg_fig.map(|p| p[3]),
            "pg_skipped": pg.as_ref().err(),
        }
    });
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("JSON serializes")
        );
    } else {
        print_table(&out);
    }
    Ok(())
}

fn print_table(out: &Value) {
    let f = |k: &str| out[k].as_f64();
    let r = |k: &str| out["raw"][k].as_f64();
    let show = |x: Option<f64>| x.map_or("skipped".to_string(), |x| format!("{x:.0}/s"));
    let ratio = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
    println!(
        "shredvault bench --server: {} clients, 1 KiB values, records in {}, {} node(s)",
        CLIENTS,
        out["store"].as_str().unwrap_or("sled"),
        out["nodes"].as_u64().unwrap_or(1)
    );
    println!();
    println!(
        "{:<36} {:>12} {:>12} {:>7}  target",
        "", "vault", "peer", "ratio"
    );
    // The targets: issue 16's for the vault on its own disk; issue 19's
    // (half of PostgreSQL's own rates) for records kept in PostgreSQL.
    let on_pg = out["store"].as_str() == Some("postgres");
    let (get_target, put_target) = if on_pg {
        (">= 0.5", ">= 0.5")
    } else {
        (">= 1.0", ">= 2.0")
    };
    println!(
        "{:<36} {:>12} {:>12} {:>7}  {get_target}",
        "get (served) / pg select",
        show(r("server_get_16_per_s")),
        show(r("pg_select_16_per_s")),
        ratio(f("server_get_vs_pg_select"))
    );
    println!(
        "{:<36} {:>12} {:>12} {:>7}  {put_target}",
        "durable put (served) / pg insert",
        show(r("server_put_durable_16_per_s")),
        show(r("pg_insert_16_per_s")),
        ratio(f("server_put_durable_vs_pg_insert"))
    );
    println!(
        "{:<36} {:>12} {:>12} {:>7}  >= 4.0",
        "durable put, 16 threads / 1",
        show(r("inprocess_put_durable_16_per_s")),
        show(r("inprocess_put_durable_1_per_s")),
        ratio(f("durable_put_16_vs_1"))
    );
    println!(
        "{:<36} {:>12} {:>12} {:>7}  (cost model)",
        "get, 16 served clients / 1 thread",
        show(r("server_get_16_per_s")),
        show(r("inprocess_get_1_per_s")),
        ratio(f("server_get_vs_inprocess"))
    );
    if let Some(why) = out["raw"]["pg_skipped"].as_str() {
        println!("\nPostgreSQL lines skipped: {why}");
    }
}

/// Requests from `CLIENTS` connections to the servers' sockets (spread
/// over them in turn), driven by two threads, for `secs`: the answers per second (every answer must be
/// a success), and, when `keep`, the answers' bodies.
fn drive(
    sockets: &[std::path::PathBuf],
    token: &str,
    secs: f64,
    keep: bool,
    request: impl Fn(usize, usize) -> (Method, String, Bytes) + Send + Sync + 'static,
) -> Result<(f64, Vec<Bytes>), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting the clients"))?;
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let auth = format!("Bearer {token}");
    let started = Instant::now();
    let results = runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..CLIENTS {
            let (request, stop, auth) = (Arc::clone(&request), Arc::clone(&stop), auth.clone());
            let socket = sockets[t % sockets.len()].clone();
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::UnixStream::connect(&socket)
                    .await
                    .map_err(io("connecting a bench client"))?;
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
                tokio::spawn(conn);
                let mut kept = Vec::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (method, path, body) = request(t, n);
                    let req = hyper::Request::builder()
                        .method(method)
                        .uri(path)
                        .header("host", "bench")
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(body))
                        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                    let response = send
                        .send_request(req)
                        .await
                        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
                    let status = response.status();
                    let bytes = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?
                        .to_bytes();
                    if !status.is_success() {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            format!(
                                "the server answered {status}: {}",
                                String::from_utf8_lossy(&bytes)
                            ),
                        ));
                    }
                    if keep {
                        kept.push(bytes);
                    }
                    n += 1;
                }
                Ok::<_, Error>((n, kept))
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        for task in tasks {
            out.push(
                task.await
                    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?,
            );
        }
        Ok::<_, Error>(out)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = 0;
    let mut kept = Vec::new();
    for r in results {
        let (n, bodies) = r?;
        total += n;
        kept.extend(bodies);
    }
    Ok((total as f64 / elapsed, kept))
}
