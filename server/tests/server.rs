//! The server with its clients: who may do what, refusals audited, many
//! clients at once, the OpenAPI document, limits, shutdown.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shredvault::{ErrorKind, RootKey, Vault, VaultOptions};
use shredvault_client::Client;
use shredvault_server::{serve, Clients, Listen, ServeOptions};

fn root() -> RootKey {
    RootKey::from_bytes(&[7; 32]).unwrap()
}

fn policy() -> shredvault::Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-policy.toml");
    shredvault::Policy::from_file(&path).unwrap()
}

fn sha(token: &str) -> String {
    hex(ring_sha256(token.as_bytes()))
}

fn ring_sha256(b: &[u8]) -> Vec<u8> {
    // The test's own SHA-256: sha256sum's, through the shell, so the test
    // does not share the server's code.
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    (0..32)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex(b: Vec<u8>) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A served vault in a temporary directory; stopped (and the vault
/// closed) on drop.
struct Served {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    vault_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn client(&self, token: Option<&str>) -> Client {
        Client::connect(&self.url(), token).unwrap()
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            self.thread.take().unwrap().join().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop();
    }
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn clients_toml(uid_grant: &str) -> String {
    format!(
        r#"
[clients.billing]
token_sha256 = "{}"
operations = ["read", "write"]
purposes = ["billing", "account_admin"]
categories = ["account"]

[clients.analytics]
token_sha256 = "{}"
operations = ["read"]
purposes = ["analytics", "billing"]
categories = []

[clients.legal]
token_sha256 = "{}"
operations = ["read"]
purposes = ["*"]
privileged = true

[clients.dpo]
token_sha256 = "{}"
operations = ["read", "write", "erase", "rights", "admin"]
purposes = ["*"]
categories = ["*"]

[clients.operator]
unix_uid = {}
operations = [{uid_grant}]
purposes = ["*"]
categories = ["*"]
"#,
        sha("billing-token"),
        sha("analytics-token"),
        sha("legal-token"),
        sha("dpo-token"),
        my_uid(),
    )
}

fn start_with(opts: impl FnOnce(&mut ServeOptions)) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let vault_dir = dir.path().join("vault");
    let socket = dir.path().join("sv.sock");
    let vopts = VaultOptions {
        actor: Some("server".into()),
        privileged: true,
        ..VaultOptions::default()
    };
    let vault = Vault::open_with(&vault_dir, &root(), Some(policy()), vopts).unwrap();
    let clients = Clients::parse(&clients_toml("\"read\"")).unwrap();
    let mut options = ServeOptions::new(vec![Listen::Unix(socket.clone())], clients);
    opts(&mut options);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let served = tokio::spawn(serve(vault, options, async {
                let _ = stop_rx.await;
            }));
            ready_tx.send(()).unwrap();
            let vault = served.await.unwrap().unwrap();
            vault.close().unwrap();
        });
    });
    ready_rx.recv().unwrap();
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Served {
        _dir: dir,
        socket,
        vault_dir,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

fn start() -> Served {
    start_with(|_| {})
}

#[test]
fn tokens_and_peer_uid_are_accepted_and_others_refused() {
    let s = start();
    let billing = s.client(Some("billing-token"));
    let subject = billing.create_subject(&[]).unwrap();
    // The peer uid proves the operator (granted read only).
    let operator = s.client(None);
    operator.stats().unwrap();
    let err = operator.create_subject(&[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    // A wrong token is nobody, even from the operator's uid.
    let err = s.client(Some("nobody")).stats().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert!(err.message().contains("no client's"), "{err}");
    let r = billing.put(&subject, "account", b"hello").unwrap();
    assert_eq!(&billing.get(&r, "billing").unwrap().data[..], b"hello");
    // The socket is 0660.
    let mode = std::fs::metadata(&s.socket).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn calls_outside_the_grant_are_forbidden_audited_and_tell_nothing() {
    let s = start();
    let dpo = s.client(Some("dpo-token"));
    let billing = s.client(Some("billing-token"));
    let analytics = s.client(Some("analytics-token"));
    let legal = s.client(Some("legal-token"));
    let subject = billing.create_subject(&[]).unwrap();
    let r = billing.put(&subject, "account", b"secret").unwrap();
    let forbidden = |e: shredvault::Error| {
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
        assert!(!e.message().contains("secret"));
    };
    // Operation: analytics may not write, billing may not erase.
    forbidden(analytics.create_subject(&[]).unwrap_err());
    forbidden(analytics.put(&subject, "account", b"x").unwrap_err());
    // Purpose: analytics may read for analytics and billing only.
    forbidden(analytics.get(&r, "account_admin").unwrap_err());
    // Category: billing writes account records only (put and update).
    forbidden(billing.put(&subject, "job_application", b"x").unwrap_err());
    let other = dpo.put(&subject, "certificate", b"c").unwrap();
    forbidden(billing.update(&other, b"y").unwrap_err());
    // Privileged: legal_claims needs a privileged client.
    forbidden(dpo.get(&r, "legal_claims").unwrap_err());
    assert_eq!(&legal.get(&r, "legal_claims").unwrap().data[..], b"secret");
    // The same refusal for a record that does not exist: nothing learnt.
    let missing = shredvault::RecordId::parse(&"ab".repeat(16)).unwrap();
    forbidden(analytics.get(&missing, "account_admin").unwrap_err());
    // Erase refused to billing; the subject is intact.
    let err = s
        .client(Some("billing-token"))
        .erase_subject(&subject)
        .unwrap_err();
    forbidden(err);
    assert_eq!(&billing.get(&r, "billing").unwrap().data[..], b"secret");
    // Every refusal is in the audit log, as its client.
    drop((billing, analytics, legal));
    let mut s = s;
    let vault_dir = s.vault_dir.clone();
    drop(dpo);
    s.stop();
    let v = Vault::open(&vault_dir, &root(), None).unwrap();
    let refused: Vec<(Option<String>, Option<String>)> = v
        .audit_entries(None)
        .unwrap()
        .into_iter()
        .filter(|e| e.op == "refused")
        .map(|e| (e.actor, e.detail))
        .collect();
    let count = |actor: &str, call: &str| {
        refused
            .iter()
            .filter(|(a, d)| a.as_deref() == Some(actor) && d.as_deref() == Some(call))
            .count()
    };
    assert_eq!(count("analytics", "create_subject"), 1);
    assert_eq!(count("analytics", "put"), 1);
    assert_eq!(count("analytics", "get"), 2);
    assert_eq!(count("billing", "put"), 1);
    assert_eq!(count("billing", "update"), 1);
    assert_eq!(count("billing", "erase_subject"), 1);
    assert_eq!(count("dpo", "get"), 1);
    // And calls carry their client's name as the actor.
    let puts: Vec<Option<String>> = v
        .audit_entries(Some(&subject))
        .unwrap()
        .into_iter()
        .filter(|e| e.op == "put" && e.outcome == "ok")
        .map(|e| e.actor)
        .collect();
    assert_eq!(puts, [Some("billing".into()), Some("dpo".into())]);
    v.verify_audit().unwrap();
}

#[test]
fn erasure_through_the_server_is_refused_to_every_client_after() {
    let s = start();
    let dpo = s.client(Some("dpo-token"));
    let billing = s.client(Some("billing-token"));
    let subject = dpo
        .create_subject(&[("email", "alice@example.com")])
        .unwrap();
    let r = billing.put(&subject, "account", b"alice").unwrap();
    assert_eq!(
        billing.find_subject("email", "alice@example.com").unwrap(),
        Some(subject)
    );
    let receipt = dpo.erase_subject(&subject).unwrap();
    let receipt: serde_json::Value = serde_json::from_str(&receipt).unwrap();
    assert_eq!(receipt["subject"], subject.to_string());
    // The account record is kept for the law (restricted), not readable.
    for c in [&dpo, &billing] {
        let kind = c.get(&r, "billing").unwrap_err().kind();
        assert!(
            matches!(kind, ErrorKind::Erased | ErrorKind::Restricted),
            "{kind}"
        );
    }
    assert_eq!(
        billing.find_subject("email", "alice@example.com").unwrap(),
        None
    );
    assert!(dpo.verify_audit().unwrap().entries > 0);
}

#[test]
fn many_clients_at_once_and_a_clean_shutdown() {
    let mut s = start();
    let url = s.url();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = Client::connect(&url, Some("billing-token")).unwrap();
                let subject = c.create_subject(&[]).unwrap();
                let mut made = Vec::new();
                for n in 0..40 {
                    let data = format!("t{t}-{n}");
                    let r = c.put(&subject, "account", data.as_bytes()).unwrap();
                    assert_eq!(c.get(&r, "billing").unwrap().data[..], *data.as_bytes());
                    made.push((r, data));
                }
                made
            })
        })
        .collect();
    let made: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    s.stop();
    assert!(!s.socket.exists(), "the socket is removed at shutdown");
    let v = Vault::open(&s.vault_dir, &root(), None).unwrap();
    for (r, data) in &made {
        assert_eq!(&v.get(r, "billing").unwrap().data[..], data.as_bytes());
    }
}

#[test]
fn a_dropped_connection_is_io_and_the_next_call_reconnects() {
    let s = start();
    let c = s.client(Some("dpo-token"));
    c.stats().unwrap();
    // The server's header timeout closes an idle connection; here the
    // server is restarted under the client instead.
    let socket = s.socket.clone();
    let vault_dir = s.vault_dir.clone();
    let mut s = s;
    s.stop();
    let err = c.stats().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    // A new server on the same socket: the client connects again.
    let vault = Vault::open_with(
        &vault_dir,
        &root(),
        None,
        VaultOptions {
            privileged: true,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let clients = Clients::parse(&clients_toml("\"read\"")).unwrap();
    let options = ServeOptions::new(vec![Listen::Unix(socket.clone())], clients);
    let rt = Arc::new(tokio::runtime::Runtime::new().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = rt.spawn(serve(vault, options, async {
        let _ = stop_rx.await;
    }));
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    c.stats().unwrap();
    stop_tx.send(()).unwrap();
    rt.block_on(handle).unwrap().unwrap().close().unwrap();
}

#[test]
fn bad_input_is_a_clean_4xx() {
    use std::io::{Read, Write};
    let s = start_with(|o| o.max_body = 1000);
    let raw = |request: &str| -> String {
        let mut stream = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    };
    let auth = "Authorization: Bearer dpo-token\r\n";
    let cases = [
        (format!("GET /v1/nothing HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"), "404", "NotFound"),
        (format!("POST /v1/subjects HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nConnection: close\r\n\r\n{{bad}}"), "400", "InvalidArgument"),
        (format!("GET /v1/records/zz?purpose=billing HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"), "400", "InvalidArgument"),
        (format!("GET /v1/records/{}?nopurpose=1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n", "ab".repeat(16)), "400", "InvalidArgument"),
        (format!("POST /v1/subjects HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5000\r\nConnection: close\r\n\r\n"), "413", "InvalidArgument"),
        (format!("DELETE /v1/stats HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"), "400", "InvalidArgument"),
        ("GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\nConnection: close\r\n\r\n".to_string(), "401", "Forbidden"),
        // The ledger from past its end (schemathesis found it a 500).
        (format!("GET /v1/ledger?from=1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"), "400", "InvalidArgument"),
        // A client never makes the server load a library as a PKCS#11 module.
        {
            let body = r#"{"new_root_key":"pkcs11:object=k?module-path=/bin/sh&pin-value=1"}"#;
            (format!("POST /v1/root-key/rotate HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()), "400", "InvalidArgument")
        },
    ];
    for (request, status, kind) in cases {
        let out = raw(&request);
        let first = out.lines().next().unwrap_or("");
        assert!(first.contains(status), "{request:?} -> {first}");
        assert!(
            out.contains(&format!("\"kind\":\"{kind}\"")),
            "{request:?} -> {out}"
        );
    }
}

#[test]
fn the_openapi_document_is_served_and_committed() {
    let s = start();
    let served = s.client(Some("analytics-token")).openapi().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("SV_UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "schemas/openapi.json is stale: run `SV_UPDATE_OPENAPI=1 cargo test -p shredvault-server --test server openapi` and commit it"
    );
    // Every route of the document is served (not the fallback's NotFound).
    let c = s.client(Some("dpo-token"));
    let _ = c;
    for (path, item) in served["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{subject}", &"cd".repeat(16))
                .replace("{record}", &"ef".repeat(16))
                .replace("{request}", &"ab".repeat(16));
            let request = format!(
                "{} {concrete}?purpose=billing HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dpo-token\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                method.to_uppercase()
            );
            use std::io::{Read, Write};
            let mut stream = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            // (A backup's answer is binary.)
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).unwrap();
            let out = String::from_utf8_lossy(&bytes);
            assert!(!out.contains("no such endpoint"), "{method} {path}: {out}");
            assert!(!out.starts_with("HTTP/1.1 5"), "{method} {path}: {out}");
        }
    }
}

/// Slow clients (headers that never finish) and oversized bodies do not
/// hold others up; the slow ones are cut off after the header timeout.
#[test]
fn slow_and_oversized_requests_do_not_harm_other_clients() {
    use std::io::{Read, Write};
    let s = start_with(|o| {
        o.header_timeout = std::time::Duration::from_secs(1);
        o.max_body = 4096;
    });
    let mut slow: Vec<_> = (0..20)
        .map(|_| {
            let mut c = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
            c.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            c
        })
        .collect();
    let c = s.client(Some("dpo-token"));
    let subject = c.create_subject(&[]).unwrap();
    let started = std::time::Instant::now();
    for i in 0..20 {
        let r = c
            .put(&subject, "account", format!("{i}").as_bytes())
            .unwrap();
        c.get(&r, "billing").unwrap();
        // Oversized, from another client, between them.
        let big = vec![b'x'; 8192];
        assert_eq!(
            s.client(Some("dpo-token"))
                .put(&subject, "account", &big)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "other clients were held up: {:?}",
        started.elapsed()
    );
    // The slow connections were closed by the server.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for conn in &mut slow {
        conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = Vec::new();
        // EOF (Ok) means the server closed it; a timeout is an error.
        conn.read_to_end(&mut buf)
            .expect("the server closes a connection whose headers never end");
        let text = String::from_utf8_lossy(&buf);
        assert!(
            buf.is_empty() || text.starts_with("HTTP/1.1 408"),
            "a slow connection got: {text}"
        );
    }
}

/// Compaction while clients read and write: their calls go on while it
/// runs, and nothing fails or is lost.
#[test]
fn compaction_while_clients_read_and_write() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let s = start();
    let url = s.url();
    let stop = Arc::new(AtomicBool::new(false));
    let compacting = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (url, stop) = (url.clone(), Arc::clone(&stop));
            let (compacting, during) = (Arc::clone(&compacting), Arc::clone(&during));
            std::thread::spawn(move || {
                let c = Client::connect(&url, Some("billing-token")).unwrap();
                let subject = c.create_subject(&[]).unwrap();
                let mut made = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let data = format!("w{t}-{n}");
                    let r = c.put(&subject, "account", data.as_bytes()).unwrap();
                    assert_eq!(c.get(&r, "billing").unwrap().data[..], *data.as_bytes());
                    if compacting.load(Ordering::SeqCst) {
                        during.fetch_add(1, Ordering::SeqCst);
                    }
                    made.push((r, data));
                    n += 1;
                }
                made
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let dpo = s.client(Some("dpo-token"));
    // Some dead data to drop: an erased subject's records.
    let gone = dpo.create_subject(&[]).unwrap();
    for i in 0..50 {
        dpo.put(&gone, "job_application", format!("gone {i}").as_bytes())
            .unwrap();
    }
    dpo.erase_subject(&gone).unwrap();
    compacting.store(true, Ordering::SeqCst);
    let report = dpo.compact().unwrap();
    compacting.store(false, Ordering::SeqCst);
    assert!(report["bytes_after"].as_u64().is_some(), "{report}");
    assert!(
        during.load(Ordering::SeqCst) > 0,
        "puts and gets went on during the compaction"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let made: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(made.len() > 20, "the writers wrote: {}", made.len());
    for (r, data) in &made {
        assert_eq!(&dpo.get(r, "billing").unwrap().data[..], data.as_bytes());
    }
    // Without the admin grant: refused.
    let err = s.client(Some("billing-token")).compact().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    dpo.verify_audit().unwrap();
}

/// A scan whose reader stops reading holds the vault; a compaction does
/// not wait for it: the scan is cut, and its reader gets `Io` after the
/// lines it was sent, never a clean end that would pass for a whole scan.
#[test]
fn a_scan_held_up_by_its_reader_is_cut_for_a_compaction() {
    let s = start();
    let billing = s.client(Some("billing-token"));
    let subject = billing.create_subject(&[]).unwrap();
    let value = vec![0x5a; 1024];
    let total = 3000;
    for _ in 0..total {
        billing.put(&subject, "account", &value).unwrap();
    }
    let mut scan = billing.scan("account", "billing").unwrap();
    assert!(scan.next().unwrap().is_ok());
    // The reader stops; the server's buffers fill.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let dpo = s.client(Some("dpo-token"));
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(dpo.compact().map(|_| ())));
    done.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the compaction waited for the scan")
        .unwrap();
    let mut read = 1;
    let end = loop {
        match scan.next() {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    let err = end.expect("a cut scan ends with an error, not a clean end");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(read < total, "{read} of {total} read");
    // The vault serves on, every record there.
    let again = billing.scan("account", "billing").unwrap();
    assert_eq!(again.count(), total);
}

/// A backup through the server is streamed to the client (several of the
/// file's frames, more than one read's worth), written whole, and
/// restores; a client without the admin grant gets none, and the server's
/// temporary file is gone.
#[test]
fn a_backup_streams_to_the_client_and_restores() {
    let s = start();
    let c = s.client(Some("dpo-token"));
    let subject = c.create_subject(&[]).unwrap();
    let blob = vec![b'q'; 16 << 10];
    let records: Vec<_> = (0..600)
        .map(|_| c.put(&subject, "account", &blob).unwrap())
        .collect();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("b.svb");
    let info = c.backup(&dest).unwrap();
    assert!(info.bytes > 9 << 20, "{info:?}");
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), info.bytes);
    assert!(!out.path().join("b.svb.partial").exists());
    let e = s
        .client(Some("analytics-token"))
        .backup(&out.path().join("b2.svb"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(!out.path().join("b2.svb").exists());
    // Nothing of it is left beside the vault.
    let leftovers: Vec<_> = std::fs::read_dir(&s.vault_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("served-backup"))
        .collect();
    assert!(leftovers.is_empty());
    let ledger = out.path().join("l.jsonl");
    c.export_ledger(&ledger).unwrap();
    let restored = out.path().join("r");
    Vault::restore(
        &dest,
        &restored,
        &root(),
        &[ledger],
        false,
        VaultOptions::default(),
    )
    .unwrap();
    let v = Vault::open(&restored, &root(), None).unwrap();
    assert_eq!(v.records(&subject).unwrap().len(), records.len());
    assert_eq!(
        &v.get(&records[477], "billing").unwrap().data[..],
        &blob[..]
    );
}
