//! HTTPS: the server's certificate checked by the client, client
//! certificates checked by the server and matched by subject, tokens over
//! TLS, and what is refused (another CA, no certificate).

use std::path::{Path, PathBuf};
use std::process::Command;

use shredvault::{ErrorKind, RootKey, Vault, VaultOptions};
use shredvault_client::{Client, TlsOptions};
use shredvault_server::{serve, Clients, Listen, ServeOptions, TlsFiles};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate it signs for `cn` with extensions `ext`.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

fn signed(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

fn sha(token: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("printf %s '{token}' | sha256sum")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

struct Served {
    dir: tempfile::TempDir,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tls(&self, ca: &str, client: Option<&str>) -> TlsOptions {
        TlsOptions {
            ca_file: Some(self.path(&format!("{ca}.pem"))),
            client_cert: client.map(|c| self.path(&format!("{c}.pem"))),
            client_key: client.map(|c| self.path(&format!("{c}.key"))),
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Served {
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

fn start() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca(d, "ca");
    ca(d, "other-ca");
    signed(
        d,
        "ca",
        "server",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    signed(
        d,
        "ca",
        "validator",
        "validator",
        "extendedKeyUsage=clientAuth\n",
    );
    signed(
        d,
        "ca",
        "stranger",
        "stranger",
        "extendedKeyUsage=clientAuth\n",
    );
    signed(
        d,
        "other-ca",
        "forged",
        "validator",
        "extendedKeyUsage=clientAuth\n",
    );
    let clients = Clients::parse(&format!(
        "[clients.validator]\ntls_subject = \"CN=validator\"\noperations = [\"read\", \"write\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\n\n[clients.billing]\ntoken_sha256 = \"{}\"\noperations = [\"read\"]\npurposes = [\"billing\"]\n",
        sha("billing-token")
    ))
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = ServeOptions::new(
        vec![Listen::Tcp(format!("127.0.0.1:{port}").parse().unwrap())],
        clients,
    );
    options.tls = Some(TlsFiles {
        cert: d.join("server.pem"),
        key: d.join("server.key"),
        client_ca: Some(d.join("ca.pem")),
    });
    let policy = shredvault::Policy::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-policy.toml"),
    )
    .unwrap();
    let vault = Vault::open_with(
        d.join("vault"),
        &RootKey::from_bytes(&[9; 32]).unwrap(),
        Some(policy),
        VaultOptions {
            privileged: true,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let vault = serve(vault, options, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
            vault.close().unwrap();
        });
    });
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Served {
        dir,
        port,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

#[test]
fn client_certificates_and_tokens_over_tls() {
    let s = start();
    // A certificate of the client CA, subject CN=validator: that client.
    let v = Client::connect_with(&s.url(), None, &s.tls("ca", Some("validator"))).unwrap();
    let subject = v.create_subject(&[]).unwrap();
    let r = v.put(&subject, "account", b"over tls").unwrap();
    assert_eq!(&v.get(&r, "billing").unwrap().data[..], b"over tls");
    // Audit entries are the admin grant's: refused (and logged).
    assert_eq!(
        v.audit_entries(Some(&subject)).unwrap_err().kind(),
        ErrorKind::Forbidden
    );
    // A token over TLS (with a certificate the list does not name).
    let b = Client::connect_with(
        &s.url(),
        Some("billing-token"),
        &s.tls("ca", Some("stranger")),
    )
    .unwrap();
    assert_eq!(&b.get(&r, "billing").unwrap().data[..], b"over tls");
    assert_eq!(
        b.put(&subject, "account", b"x").unwrap_err().kind(),
        ErrorKind::Forbidden
    );
    // A certificate of the CA whose subject is no client's.
    let stranger = Client::connect_with(&s.url(), None, &s.tls("ca", Some("stranger"))).unwrap();
    assert_eq!(stranger.stats().unwrap_err().kind(), ErrorKind::Forbidden);
    // The put is logged as the certificate's client.
    let mut s = s;
    s.stop();
    let v = Vault::open(
        s.path("vault"),
        &RootKey::from_bytes(&[9; 32]).unwrap(),
        None,
    )
    .unwrap();
    let actors: Vec<_> = v
        .audit_entries(Some(&subject))
        .unwrap()
        .into_iter()
        .filter(|e| e.op == "put" || e.op == "refused")
        .map(|e| (e.op, e.actor.unwrap_or_default()))
        .collect();
    assert_eq!(
        actors,
        [
            ("put".to_string(), "validator".to_string()),
            ("refused".to_string(), "validator".to_string()),
            ("refused".to_string(), "billing".to_string()),
        ]
    );
}

#[test]
fn what_tls_refuses() {
    let s = start();
    // The same subject from another CA: the handshake fails.
    let forged =
        Client::connect_with(&s.url(), None, &s.tls("ca", Some("forged"))).and_then(|c| c.stats());
    assert_eq!(forged.unwrap_err().kind(), ErrorKind::Io);
    // No client certificate where the server asks for one.
    let none = Client::connect_with(&s.url(), Some("billing-token"), &s.tls("ca", None))
        .and_then(|c| c.stats());
    assert_eq!(none.unwrap_err().kind(), ErrorKind::Io);
    // A server certificate the client's CA did not sign.
    let wrong_ca = Client::connect_with(&s.url(), None, &s.tls("other-ca", Some("validator")))
        .and_then(|c| c.stats());
    assert_eq!(wrong_ca.unwrap_err().kind(), ErrorKind::Io);
    // Plain HTTP on the TLS port: no answer the client takes.
    let plain = Client::connect(
        &format!("unix://{}", s.path("nothing.sock").display()),
        None,
    );
    assert_eq!(plain.unwrap_err().kind(), ErrorKind::Io);
}
