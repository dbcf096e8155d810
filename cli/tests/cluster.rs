//! Two `serve` nodes on one vault in PostgreSQL (issue 19), as an operator
//! runs them: `init --store ... --root-key pkcs11:... --create-key`, a
//! second node's directory copied from the first (it holds no key and no
//! record), both started with `--advertise`. Clients are spread over both
//! nodes: every put acknowledged by one node is read back at once through
//! the other, every erasure acknowledged by one is refused at once by the
//! other, expiry runs (each ending a key epoch) come in between; the
//! active node is killed with SIGKILL mid-load and restarted. Then nothing
//! acknowledged is lost, nothing erased reads back on either node, and
//! the audit chain verifies.
//!
//! Needs PostgreSQL and SoftHSM2 (the test script requires both).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

mod common;
use common::{ok, Token};
use shredvault::ErrorKind;
use shredvault_client::Client;

const TOKEN: &str = "cluster-test-bearer-token";

fn sha256_hex(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// One node: `serve DIR --advertise unix://SOCKET`.
struct Node {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Node {
    fn start(&mut self, t: &Token, root: &str, clients: &Path, node_token: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shredvault"))
            .arg("serve")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("unix:{}", self.socket.display()))
            .arg("--clients")
            .arg(clients)
            .arg("--advertise")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--cluster-token-file")
            .arg(node_token)
            .env("SOFTHSM2_CONF", t.conf())
            .env("SHREDVAULT_ROOT_KEY", root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` until it answers other than "not now" (`Locked`: failing
/// over; `Io`: the node went away): what a client of a cluster does.
fn retried<T>(what: &str, mut f: impl FnMut() -> shredvault::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if matches!(e.kind(), ErrorKind::Locked | ErrorKind::Io) => {
                assert!(Instant::now() < deadline, "{what}: still {e} after 60 s");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Who acknowledged what.
#[derive(Default)]
struct Seen {
    puts: Vec<(shredvault::RecordId, Vec<u8>)>,
    erased: Vec<shredvault::RecordId>,
    epochs_ended: u64,
}

#[test]
fn two_nodes_one_killed_under_load_lose_nothing_and_erase_everywhere() {
    let (Some(pg), Some(t)) = (shredvault::postgres::for_tests(), Token::new()) else {
        return;
    };
    let store = shredvault::postgres::fresh_schema(pg, "cluster");
    let schema = shredvault::postgres::schema_of(&store).to_string();
    let work = tempfile::tempdir().unwrap();
    let root = t.uri("cluster-root");
    let first = work.path().join("node-a");
    let policy = format!("{}/../example-policy.toml", env!("CARGO_MANIFEST_DIR"));
    ok(&t.sv(
        &[
            "init",
            first.to_str().unwrap(),
            "--policy",
            &policy,
            "--store",
            &store,
            "--root-key",
            &root,
            "--create-key",
        ],
        None,
    ));
    // The second node's directory: a copy of the first (a database's name
    // and this node's marks; no key, no record).
    let second = work.path().join("node-b");
    std::fs::create_dir(&second).unwrap();
    for entry in std::fs::read_dir(&first).unwrap() {
        let entry = entry.unwrap();
        assert!(entry.file_type().unwrap().is_file(), "{:?}", entry.path());
        std::fs::copy(entry.path(), second.join(entry.file_name())).unwrap();
    }
    let clients = work.path().join("clients.toml");
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    std::fs::write(
        &clients,
        format!(
            "[clients.app]\ntoken_sha256 = \"{}\"\noperations = [\"read\", \"write\", \"erase\", \"admin\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\n\n[clients.ops]\nunix_uid = {uid}\noperations = [\"read\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\n",
            sha256_hex(TOKEN)
        ),
    )
    .unwrap();
    let node_token = work.path().join("node-token");
    std::fs::write(&node_token, "a node token of this cluster's own\n").unwrap();
    let node = |dir: &Path, name: &str| Node {
        child: None,
        dir: dir.to_path_buf(),
        socket: work.path().join(format!("{name}.sock")),
        log: work.path().join(format!("{name}.log")),
    };
    let mut nodes = [node(&first, "a"), node(&second, "b")];
    for n in nodes.iter_mut() {
        n.start(&t, &root, &clients, &node_token);
    }
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let active = || -> usize {
        let out = pg
            .psql(&format!("SELECT url FROM {schema}.shredvault_nodes"))
            .unwrap_or_default();
        usize::from(out.contains("b.sock"))
    };

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    // Held by an expiry run in flight; the kill waits for none to be (a
    // SoftHSM2 token is file-backed, and a process killed while it writes
    // the token's files can damage them: a real token's are not its
    // clients' to damage).
    let expiring = Arc::new(RwLock::new(()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (urls, stop, acked, expiring, seen) = (
                urls.clone(),
                Arc::clone(&stop),
                Arc::clone(&acked),
                Arc::clone(&expiring),
                Arc::clone(&seen),
            );
            std::thread::spawn(move || {
                // Writes through one node, reads through the other.
                let here = Client::connect(&urls[w % 2], Some(TOKEN)).unwrap();
                let there = Client::connect(&urls[(w + 1) % 2], Some(TOKEN)).unwrap();
                let mut later = 0i64;
                for n in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let s = retried("create", || here.create_subject(&[]));
                    let data = format!("w{w}-{n}").into_bytes();
                    let category = if n % 3 == 0 { "usage_log" } else { "account" };
                    let r = match here.put(&s, category, &data) {
                        Ok(r) => r,
                        // Not acknowledged: nothing is promised.
                        Err(e) if matches!(e.kind(), ErrorKind::Locked | ErrorKind::Io) => continue,
                        Err(e) => panic!("put: {e}"),
                    };
                    acked.fetch_add(1, Ordering::SeqCst);
                    // Read back at once through the other node.
                    let got = retried("read back", || {
                        there.get(&r, "billing").or_else(|e| {
                            if e.kind() == ErrorKind::PurposeDenied {
                                there.get(&r, "security")
                            } else {
                                Err(e)
                            }
                        })
                    });
                    assert_eq!(&got.data[..], &data[..], "worker {w}");
                    if n % 3 == 0 {
                        // Erased through this node, refused at once by the
                        // other.
                        match here.erase_subject(&s) {
                            Ok(_) => {
                                let e = retried("read after erasure", || {
                                    match there.get(&r, "security") {
                                        Ok(_) => panic!("worker {w}: an erased record read back"),
                                        Err(e) if e.kind() == ErrorKind::Erased => Ok(e),
                                        Err(e) => Err(e),
                                    }
                                });
                                assert_eq!(e.kind(), ErrorKind::Erased);
                                seen.lock().unwrap().erased.push(r);
                            }
                            Err(e) if matches!(e.kind(), ErrorKind::Locked | ErrorKind::Io) => {
                                // Unacknowledged: it may or may not be done.
                            }
                            Err(e) => panic!("erase: {e}"),
                        }
                    } else {
                        seen.lock().unwrap().puts.push((r, data));
                    }
                    if w == 0 && n % 20 == 19 {
                        // An expiry run two days on (forced): the key epoch
                        // ends in it.
                        let _in_flight = expiring.read().unwrap();
                        later = later.max(now()) + 2 * 86_400;
                        if let Ok(report) = here.expire_with(later, true) {
                            seen.lock().unwrap().epochs_ended += report.key_epochs_ended;
                        }
                    }
                }
            })
        })
        .collect();

    let wait_for = |n: usize, what: &str, nodes: &[Node]| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "{what}: {} acknowledged\n--- a ---\n{}\n--- b ---\n{}",
                acked.load(Ordering::SeqCst),
                nodes[0].log_text(),
                nodes[1].log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(150, "before the kill", &nodes);
    let (killed, killed_at) = {
        let _quiet = expiring.write().unwrap();
        let a = active();
        nodes[a].kill();
        (a, Instant::now())
    };
    // The other node takes the vault while this one is down (the clients
    // of both wait meanwhile: each call to the dead node fails, each one
    // forwarded to it is `Locked`).
    let deadline = Instant::now() + Duration::from_secs(60);
    while active() == killed {
        assert!(
            Instant::now() < deadline,
            "no node took over:\n{}",
            nodes[1 - killed].log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let failover = killed_at.elapsed();
    let at_kill = acked.load(Ordering::SeqCst);
    // Restarted, it is a standby forwarding to the new active node.
    nodes[killed].start(&t, &root, &clients, &node_token);
    wait_for(at_kill + 200, "after the restart", &nodes);
    assert_ne!(active(), killed, "the restarted node stays a standby");
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }

    // A client known by its Unix uid, through the standby: vouched for
    // with the node token, served by the active node.
    let standby = 1 - active();
    let ops = Client::connect(&urls[standby], None).unwrap();
    retried("a uid client through the standby", || ops.stats());
    // Only the node token vouches: a wrong one is refused by either node
    // (the right one is the cluster's secret, as the nodes' file).
    let forged = |socket: &Path, token: &str| -> String {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
        write!(
            s,
            "GET /v1/stats HTTP/1.1\r\nHost: x\r\nx-shredvault-node-token: {token}\r\nx-shredvault-forwarded-client: app\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.lines().next().unwrap_or_default().to_string()
    };
    let active_socket = &nodes[active()].socket;
    for n in &nodes {
        assert!(
            forged(&n.socket, "not the node token").contains(" 401 "),
            "a wrong node token"
        );
    }
    assert!(
        forged(active_socket, "a node token of this cluster's own").contains(" 200 "),
        "the right node token"
    );

    let seen = seen.lock().unwrap();
    assert!(seen.epochs_ended > 0, "no key epoch ended under load");
    for url in &urls {
        let c = Client::connect(url, Some(TOKEN)).unwrap();
        for (r, data) in &seen.puts {
            let got = retried("the final read", || c.get(r, "billing"));
            assert_eq!(&got.data[..], &data[..]);
        }
        for r in &seen.erased {
            let e = c.get(r, "security").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Erased, "{e}");
        }
        retried("audit verify", || c.verify_audit());
    }
    eprintln!(
        "{} puts, {} erasures, {} key epochs ended; node {} killed, the other active {:?} later",
        seen.puts.len(),
        seen.erased.len(),
        seen.epochs_ended,
        ["a", "b"][killed],
        failover
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
