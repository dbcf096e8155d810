//! `shredvault demo`: the whole story on an embedded vault in
//! `./shredvault-demo`, printing each step and checking each claim it makes
//! (a claim that does not hold ends the demo with an error).

use std::path::{Path, PathBuf};

use shredvault::{Error, ErrorKind, Policy, RootKey, Vault, VaultOptions};

use crate::unix_now;

const DEMO_DIR: &str = "shredvault-demo";
const EMBEDDED_POLICY: &str = include_str!("../../example-policy.toml");

fn step(n: &mut u32, title: &str) {
    *n += 1;
    println!("\n[{n}] {title}");
}

fn claim(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        println!("    ok: {what}");
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Internal,
            format!("demo claim failed: {what}"),
        ))
    }
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

pub fn run() -> Result<(), Error> {
    let dir = PathBuf::from(DEMO_DIR);
    let mut n = 0;
    println!(
        "shredvault {} demo: personal data erased by destroying keys",
        shredvault::VERSION
    );

    step(&mut n, "Create an embedded vault");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("removing the previous demo vault"))?;
    }
    let (policy, source) = match std::fs::read_to_string("example-policy.toml") {
        Ok(text) => (
            Policy::parse(&text, "example-policy.toml")?,
            "./example-policy.toml",
        ),
        Err(_) => (
            Policy::parse(EMBEDDED_POLICY, "example-policy.toml (built in)")?,
            "the built-in copy of example-policy.toml",
        ),
    };
    println!(
        "    policy: {source}: {} categories, {} purposes",
        policy.categories().count(),
        policy.purposes().count()
    );
    // A real deployment keeps the root key in its KMS or HSM; the demo makes
    // a fresh one and holds it only in memory.
    let root = RootKey::generate()?;
    let vault = Vault::open(&dir, &root, Some(policy))?;
    println!(
        "    vault {} at ./{DEMO_DIR} (data/ = sled, keys/ = keystore)",
        vault.vault_id()
    );

    step(&mut n, "Two customers sign up");
    let alice = vault.create_subject(&[
        ("email", "alice@example.com"),
        ("customer_number", "C-1001"),
    ])?;
    let bob = vault.create_subject(&[("email", "bob@example.com")])?;
    println!("    alice = {alice}\n    bob   = {bob}");
    let alice_account = vault.put(
        &alice,
        "account",
        br#"{"name":"Alice Liddell","address":"1 Rabbit Hole, Oxford"}"#,
    )?;
    let alice_cert = vault.put(
        &alice,
        "certificate",
        br#"{"cn":"alice.example.com","org":"Wonderland Ltd"}"#,
    )?;
    let alice_usage = vault.put(
        &alice,
        "usage_log",
        b"2026-11-26T10:00:00Z login from 203.0.113.7",
    )?;
    let bob_account = vault.put(
        &bob,
        "account",
        br#"{"name":"Bob Builder","address":"2 Site Lane, Leeds"}"#,
    )?;
    let bob_usage = vault.put(
        &bob,
        "usage_log",
        b"2026-11-26T10:05:00Z login from 198.51.100.9",
    )?;
    println!("    stored alice: account {alice_account}, certificate {alice_cert}, usage_log {alice_usage}");
    println!("    stored bob:   account {bob_account}, usage_log {bob_usage} (kept 13 months)");

    step(
        &mut n,
        "Find a customer by e-mail (blind index: HMAC of the normalized address)",
    );
    let found = vault.find_subject("email", "  Alice@Example.COM ")?;
    claim(found == Some(alice), "\"  Alice@Example.COM \" finds alice")?;

    step(&mut n, "Read with a purpose; the policy decides");
    let rec = vault.get(&alice_account, "billing")?;
    println!(
        "    billing reads alice's account: {}",
        String::from_utf8_lossy(&rec.data)
    );
    let denied = vault.get(&alice_account, "marketing");
    claim(
        matches!(&denied, Err(e) if e.kind() == ErrorKind::PurposeDenied),
        "marketing may not read account data (PurposeDenied)",
    )?;

    step(&mut n, "Alice moves house: rectification rotates her key");
    vault.update(
        &alice_account,
        br#"{"name":"Alice Liddell","address":"7 Looking Glass Rd, Oxford"}"#,
    )?;
    let rec = vault.get(&alice_account, "account_admin")?;
    println!(
        "    now: {} (version {})",
        String::from_utf8_lossy(&rec.data),
        rec.version
    );
    println!("    her other records were re-sealed under a fresh key; the old key's slot was overwritten");

    step(&mut n, "One record erased on its own");
    vault.delete(&alice_usage)?;
    claim(
        matches!(vault.get(&alice_usage, "security"), Err(e) if e.kind() == ErrorKind::Erased),
        "the usage log record reads as Erased",
    )?;

    step(
        &mut n,
        "Retention clock: alice's last certificate ends on 2027-06-30",
    );
    vault.record_event(
        &alice,
        "last_certificate_end",
        time("2027-06-30T10:00:00Z")?,
    )?;
    let cert_expiry = |vault: &Vault| -> Result<Option<i64>, Error> {
        Ok(vault
            .records(&alice)?
            .into_iter()
            .find(|r| r.id == alice_cert)
            .and_then(|r| r.expires_at))
    };
    let at = cert_expiry(&vault)?;
    println!("    certificate data expires at {}", show(at));
    claim(
        at == Some(time("2034-07-01T00:00:00Z")?),
        "kept 7 years after the last certificate, to the end of that day",
    )?;
    vault.set_flag(&alice, "qualified_certificate", true)?;
    let at = cert_expiry(&vault)?;
    println!(
        "    flagged qualified_certificate: now expires at {}",
        show(at)
    );
    claim(
        at == Some(time("2042-07-01T00:00:00Z")?),
        "a qualified certificate is kept 15 years (re-sealed under that day's key)",
    )?;

    step(
        &mut n,
        "Consent: alice signs up for marketing, then withdraws",
    );
    let now = unix_now();
    vault.give_consent(&alice, "marketing", now)?;
    let alice_marketing = vault.put(&alice, "marketing_contact", b"alice@example.com, weekly")?;
    println!("    consent given; marketing contact stored as {alice_marketing}");
    vault.withdraw_consent(&alice, "marketing", now)?;
    claim(
        matches!(vault.get(&alice_marketing, "marketing"), Err(e) if e.kind() == ErrorKind::Erased),
        "withdrawal erased the marketing contact (her key was rotated)",
    )?;
    claim(
        vault.get(&alice_account, "account_admin").is_ok(),
        "her account, kept on legitimate interest, is untouched",
    )?;

    step(&mut n, "An expiry run, as if 400 days had passed");
    let later = now + 400 * 86_400;
    claim(
        matches!(vault.expire(later), Err(e) if e.kind() == ErrorKind::InvalidArgument),
        "a time more than a day ahead of the clock is refused (a typo would destroy keys years early)",
    )?;
    let report = vault.expire_with(later, true)?;
    println!("    forced, as an operator would after checking the date:");
    println!(
        "    expire({}): {} day key(s) destroyed, {} record(s) expired",
        show(Some(later)),
        report.days_destroyed,
        report.records_expired
    );
    claim(
        matches!(vault.get(&bob_usage, "security"), Err(e) if e.kind() == ErrorKind::Expired),
        "bob's 13-month usage log is gone: its day's key was destroyed",
    )?;
    claim(
        vault.get(&alice_cert, "certificate_validation").is_ok(),
        "alice's certificate (kept to 2042) is not",
    )?;

    step(&mut n, "Nothing personal is in the files");
    vault.flush()?;
    for needle in [
        "Alice Liddell",
        "alice@example.com",
        "Looking Glass",
        "C-1001",
    ] {
        let hits = files_contain(&dir, needle.as_bytes());
        claim(
            hits.is_empty(),
            &format!("{needle:?} appears in no file under ./{DEMO_DIR}"),
        )?;
    }

    step(
        &mut n,
        "Alice asks what we hold about her: an access request, answered with an export",
    );
    let request = vault.open_request(&alice, "access", unix_now())?;
    let due = vault
        .requests(None)?
        .into_iter()
        .find(|r| r.id == request)
        .map(|r| r.due);
    println!("    request {request} opened; due {}", show(due));
    let export = vault.export(&alice)?;
    let records = export["records"].as_array().map(Vec::len).unwrap_or(0);
    let disclosures = export["disclosures"].as_array().map(Vec::len).unwrap_or(0);
    println!(
        "    export: {records} records, {} identifiers, {} consent entries, {disclosures} disclosures (reads, from the audit log)",
        export["identifiers"].as_array().map(Vec::len).unwrap_or(0),
        export["consents"].as_array().map(Vec::len).unwrap_or(0),
    );
    if let Some(first) = export["records"].as_array().and_then(|r| r.first()) {
        println!(
            "    e.g. {} ({}): kept {}, expires {}",
            first["category"].as_str().unwrap_or("?"),
            first["legal_basis"].as_str().unwrap_or("?"),
            first["retention"].as_str().unwrap_or("?"),
            show(first["expires_at"].as_i64())
        );
    }
    claim(
        records == 2,
        "her account and certificate are in it, as JSON",
    )?;
    vault.close_request(&request, unix_now())?;
    claim(
        vault.requests(Some(unix_now() + 40 * 86_400))?.is_empty(),
        "the request is closed: nothing is overdue",
    )?;

    step(
        &mut n,
        "A backup of data/ is taken (keys/ is never backed up with it)",
    );
    let backup =
        std::env::temp_dir().join(format!("shredvault-demo-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&backup);
    drop(vault);
    copy_dir(&dir.join("data"), &backup).map_err(io("copying data/"))?;
    println!("    copied ./{DEMO_DIR}/data to {}", backup.display());
    let vault = Vault::open(&dir, &root, None)?;

    step(&mut n, "Alice asks to be erased");
    let receipt = vault.erase_subject(&alice)?;
    println!("    receipt:\n{}", indent(&receipt.to_json()));
    claim(
        matches!(vault.get(&alice_cert, "certificate_validation"), Err(e) if e.kind() == ErrorKind::Restricted),
        "industry rules keep her certificate data: restricted, no longer usable for validation",
    )?;
    claim(
        matches!(vault.get(&alice_cert, "legal_claims"), Err(e) if e.kind() == ErrorKind::PurposeDenied),
        "legal_claims is privileged: this handle may not read for it",
    )?;
    drop(vault);
    let privileged = VaultOptions {
        privileged: true,
        ..Default::default()
    };
    let vault = Vault::open_with(&dir, &root, None, privileged)?;
    claim(
        vault.get(&alice_cert, "legal_claims").is_ok(),
        "a handle opened as privileged reads it for legal claims, until 2042-07-01",
    )?;
    claim(
        vault.find_subject("email", "alice@example.com")?.is_none(),
        "her e-mail finds no one",
    )?;
    let public_key = vault.receipt_public_key()?;
    claim(
        shredvault::verify_receipt(&receipt.to_json(), Some(&public_key)).is_ok(),
        &format!("the receipt's signature verifies with the vault's public key {public_key}"),
    )?;
    let forged = receipt
        .to_json()
        .replacen("\"records\": 1", "\"records\": 0", 1);
    claim(
        shredvault::verify_receipt(&forged, Some(&public_key)).is_err(),
        "a receipt with one number changed does not",
    )?;
    let audit = vault.verify_audit()?;
    claim(
        audit.last_seq >= Some(receipt.audit_seq),
        &format!(
            "the audit chain verifies: {} entries, ids only, the erasure is entry {}",
            audit.entries, receipt.audit_seq
        ),
    )?;

    step(
        &mut n,
        "Disaster recovery: the old data/ is restored beside the current keys/",
    );
    drop(vault);
    std::fs::remove_dir_all(dir.join("data")).map_err(io("removing data/"))?;
    copy_dir(&backup, &dir.join("data")).map_err(io("restoring data/"))?;
    let _ = std::fs::remove_dir_all(&backup);
    claim(
        matches!(Vault::open(&dir, &root, None), Err(e) if e.kind() == ErrorKind::Corrupt),
        "the vault refuses it: data/ is older than keys/, and opening would destroy newer keys",
    )?;
    Vault::accept_stale_data(&dir, &root)?;
    println!("    the operator accepts the old copy (`shredvault repair --accept-stale-data`):");
    println!("    what was written after the backup is lost, nothing erased comes back");
    let vault = Vault::open(&dir, &root, None)?;
    claim(
        matches!(vault.get(&alice_account, "account_admin"), Err(e) if e.kind() == ErrorKind::Erased),
        "alice stays erased: the restored copy is sealed under her old key, destroyed at the erasure",
    )?;
    println!("    (what was retained had been re-sealed after the backup, so it is not in this copy either:");
    println!("     a restore brings back only what the backup saw, and nothing erased)");
    let bob_rec = vault.get(&bob_account, "account_admin")?;
    claim(
        bob_rec.data.starts_with(b"{\"name\":\"Bob"),
        "bob reads back intact from the restored copy",
    )?;

    step(&mut n, "Vault statistics");
    let stats = vault.stats()?;
    println!(
        "{}",
        indent(&serde_json::to_string_pretty(&stats).expect("stats serialize"))
    );
    vault.close()?;

    step(
        &mut n,
        "Many processes share it: a server, command-line clients, a C program and a Python script",
    );
    served(&dir, &root, &bob)?;

    println!(
        "\nDone. The demo vault is in ./{DEMO_DIR}; its root key existed only in this process."
    );
    Ok(())
}

/// The vault served on a Unix socket to two clients in processes of their
/// own (this binary with `--url`), each with its own token and grant; one
/// read outside a grant is refused.
fn served(dir: &Path, root: &RootKey, bob: &shredvault::SubjectId) -> Result<(), Error> {
    use std::process::Command;
    let token = |name: &str| -> Result<String, Error> {
        // 128 random bits, as hex.
        let random = RootKey::generate()?.to_text();
        let token = format!("{name}-{}", &random[..32]);
        let path = dir.join(format!("{name}.token"));
        std::fs::write(&path, &token).map_err(io("writing a token file"))?;
        Ok(token)
    };
    let sha = |t: &str| hex::encode(ring_sha256(t.as_bytes()));
    let billing = token("billing")?;
    let analytics = token("analytics")?;
    let job = token("python-job")?;
    let clients = format!(
        "[clients.billing]\ntoken_sha256 = \"{}\"\noperations = [\"read\", \"write\"]\npurposes = [\"billing\"]\ncategories = [\"account\"]\n\n[clients.analytics]\ntoken_sha256 = \"{}\"\noperations = [\"read\"]\npurposes = [\"billing\"]\n\n[clients.python-job]\ntoken_sha256 = \"{}\"\noperations = [\"read\", \"write\", \"erase\"]\npurposes = [\"billing\"]\ncategories = [\"account\"]\n",
        sha(&billing),
        sha(&analytics),
        sha(&job)
    );
    std::fs::write(dir.join("clients.toml"), &clients).map_err(io("writing clients.toml"))?;
    println!("    clients.toml: billing may read for billing and write accounts;");
    println!("    analytics may read for billing only; python-job may also erase");
    println!("    (tokens stored as SHA-256)");
    let socket = std::env::current_dir()
        .map_err(io("the current directory"))?
        .join(dir)
        .join("sv.sock");
    let vault = Vault::open_with(
        dir,
        root,
        None,
        VaultOptions {
            actor: Some("server".into()),
            privileged: true,
            ..VaultOptions::default()
        },
    )?;
    let options = shredvault_server::ServeOptions::new(
        vec![shredvault_server::Listen::Unix(socket.clone())],
        shredvault_server::Clients::parse(&clients)?,
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Runtime::new().map_err(io("starting the server"))?;
    let server = runtime.spawn(shredvault_server::serve(vault, options, async {
        let _ = stop_rx.await;
    }));
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let url = format!("unix://{}", socket.display());
    println!("    shredvault serve: listening on {url}");
    let exe = std::env::current_exe().map_err(io("finding this program"))?;
    let client =
        |who: &str, args: &[&str], stdin: Option<&[u8]>| -> Result<std::process::Output, Error> {
            use std::io::Write;
            let mut child = Command::new(&exe)
                .args(["--url", &url, "--token-file"])
                .arg(dir.join(format!("{who}.token")))
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(io("starting a client"))?;
            let mut input = child.stdin.take().expect("piped");
            if let Some(bytes) = stdin {
                input.write_all(bytes).map_err(io("writing to a client"))?;
            }
            drop(input);
            child.wait_with_output().map_err(io("a client"))
        };
    // The billing service and the analytics job, at the same time.
    let (put, scan) = std::thread::scope(|scope| {
        let billing_side = scope.spawn(|| {
            client(
                "billing",
                &["put", &bob.to_string(), "account"],
                Some(b"{\"invoice\":\"INV-7\",\"amount\":\"19.00 EUR\"}"),
            )
        });
        let analytics_side = scope.spawn(|| {
            client(
                "analytics",
                &["scan", "account", "--purpose", "billing"],
                None,
            )
        });
        (
            billing_side.join().expect("the billing client"),
            analytics_side.join().expect("the analytics client"),
        )
    });
    let (put, scan) = (put?, scan?);
    claim(
        put.status.success(),
        "the billing process stores a record through the server",
    )?;
    let record = String::from_utf8_lossy(&put.stdout).trim().to_string();
    println!("    billing (one process): put an invoice: {record}");
    claim(
        scan.status.success(),
        "the analytics process scans at the same time",
    )?;
    println!(
        "    analytics (another process, meanwhile): scanned {} account record(s) for billing",
        String::from_utf8_lossy(&scan.stdout).lines().count()
    );
    let got = client("analytics", &["get", &record, "--purpose", "billing"], None)?;
    claim(
        got.status.success() && String::from_utf8_lossy(&got.stdout).contains("INV-7"),
        "analytics reads billing's new record back",
    )?;
    let refused = client(
        "analytics",
        &["get", &record, "--purpose", "account_admin"],
        None,
    )?;
    let why = String::from_utf8_lossy(&refused.stderr).trim().to_string();
    claim(
        !refused.status.success() && why.contains("Forbidden"),
        "a read for a purpose analytics was not granted is refused",
    )?;
    println!("    analytics asks for account_admin: {why}");
    c_and_python(dir, &url, &billing, &job)?;
    let _ = stop_tx.send(());
    let vault = runtime
        .block_on(server)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("the server: {e}")))??;
    let refusals = vault
        .audit_entries(None)?
        .into_iter()
        .filter(|e| e.op == "refused" && e.actor.as_deref() == Some("analytics"))
        .count();
    claim(
        refusals == 1,
        "the refusal is in the audit log, as analytics",
    )?;
    vault.close()?;
    println!("    server stopped; every call is in the audit log under its client's name");
    Ok(())
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn time(text: &str) -> Result<i64, Error> {
    shredvault::retention::parse_time(text)
}

fn show(at: Option<i64>) -> String {
    match at.map(jiff::Timestamp::from_second) {
        Some(Ok(t)) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        _ => "never (no date yet)".to_string(),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A C program (`examples/c/served.c`, `sv_connect`) and a Python script
/// (`examples/python/served.py`, `sv.connect`) on the served vault at the
/// same time. They need the C library and the Python module, which this
/// builds (`cargo build --release -p shredvault-ffi -p shredvault-py`), a
/// C compiler and python3: without them the part is skipped, and says so.
fn c_and_python(dir: &Path, url: &str, c_token: &str, py_token: &str) -> Result<(), Error> {
    use std::process::{Command, Stdio};
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let runs = |program: &std::ffi::OsStr| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<String> = [(&cargo, "cargo"), (&cc, "a C compiler (cc)")]
        .into_iter()
        .filter(|(p, _)| !runs(p))
        .map(|(_, what)| what.to_string())
        .chain((!runs("python3".as_ref())).then(|| "python3".to_string()))
        .collect();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the CLI crate is in the workspace");
    let sources = [
        repo.join("examples/c/served.c"),
        repo.join("examples/python/served.py"),
        repo.join("python/pysrc/shredvault/__init__.py"),
    ];
    if !missing.is_empty() || sources.iter().any(|p| !p.exists()) {
        println!(
            "    (a C program and a Python script on it: skipped here, it needs {} and this checkout)",
            if missing.is_empty() { "the example sources".into() } else { missing.join(", ") }
        );
        return Ok(());
    }
    println!("    building the C library and the Python module for them (cargo build --release -p shredvault-ffi -p shredvault-py)");
    let built = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "shredvault-ffi",
            "-p",
            "shredvault-py",
        ])
        .current_dir(repo)
        .status()
        .map_err(io("running cargo"))?;
    claim(
        built.success(),
        "the C library and the Python module are built",
    )?;
    let lib_dir = repo.join("target/release");
    let program = std::env::current_dir()
        .map_err(io("the current directory"))?
        .join(dir)
        .join("served-c");
    let compiled = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra"])
        .arg(&sources[0])
        .arg("-I")
        .arg(repo.join("include"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lshredvault")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&program)
        .status()
        .map_err(io("running the C compiler"))?;
    claim(
        compiled.success(),
        "examples/c/served.c compiles against libshredvault",
    )?;
    // The Python package as a wheel would lay it out: its Python sources
    // and the extension module beside them.
    let package = dir.join("python").join("shredvault");
    std::fs::create_dir_all(&package).map_err(io("making the Python package"))?;
    for entry in std::fs::read_dir(repo.join("python/pysrc/shredvault"))
        .map_err(io("reading python/pysrc"))?
    {
        let entry = entry.map_err(io("reading python/pysrc"))?;
        std::fs::copy(entry.path(), package.join(entry.file_name()))
            .map_err(io("copying the Python package"))?;
    }
    std::fs::copy(
        lib_dir.join("lib_shredvault.so"),
        package.join("_shredvault.abi3.so"),
    )
    .map_err(io("copying the Python module"))?;
    let c = Command::new(&program)
        .args([url, c_token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("starting the C program"))?;
    let py = Command::new("python3")
        .arg(&sources[1])
        .args([url, py_token])
        .env("PYTHONPATH", dir.join("python"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("starting the Python script"))?;
    let (c, py) = (
        c.wait_with_output().map_err(io("the C program"))?,
        py.wait_with_output().map_err(io("the Python script"))?,
    );
    for out in [&c, &py] {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("    {line}");
        }
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            println!("    (stderr) {line}");
        }
    }
    claim(
        c.status.success(),
        "a C program (sv_connect) stores and reads while the Python script runs, and is refused a purpose outside its grant",
    )?;
    claim(
        py.status.success(),
        "a Python script (sv.connect) stores, reads back and erases on the same vault at the same time",
    )
}
