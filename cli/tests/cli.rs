//! The command line as an operator uses it: ids on stdout, one-line reasons
//! on stderr, exit status.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const KEY_HEX: &str = "4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f";

fn policy() -> String {
    format!("{}/../example-policy.toml", env!("CARGO_MANIFEST_DIR"))
}

fn sv(args: &[&str]) -> Output {
    sv_with(args, None, Some(KEY_HEX))
}

fn sv_with(args: &[&str], stdin: Option<&[u8]>, key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shredvault"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("SHREDVAULT_ROOT_KEY");
    if let Some(k) = key {
        cmd.env("SHREDVAULT_ROOT_KEY", k);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

fn fails(out: &Output, kind: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(kind), "{kind} in {err}");
}

fn init(dir: &Path) -> String {
    let vault = dir.join("v").display().to_string();
    ok(&sv(&["init", &vault, "--policy", &policy()]));
    vault
}

#[test]
fn the_operator_story() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let alice = ok(&sv(&[
        "subject",
        "create",
        &vault,
        "--identifier",
        "email=alice@example.com",
        "--identifier",
        "customer_number=C-1",
    ]));
    assert_eq!(alice.len(), 32);
    assert_eq!(
        ok(&sv(&[
            "subject",
            "find",
            &vault,
            "email",
            " ALICE@example.com"
        ])),
        alice
    );
    let r1 = ok(&sv(&[
        "put",
        &vault,
        &alice,
        "account",
        "--data",
        "{\"name\":\"Alice\"}",
    ]));
    let file = dir.path().join("cert.bin");
    std::fs::write(&file, b"\x00\x01binary\xff").unwrap();
    let r2 = ok(&sv(&[
        "put",
        &vault,
        &alice,
        "certificate",
        "--file",
        file.to_str().unwrap(),
    ]));
    let r3 = ok(&sv_with(
        &["put", &vault, &alice, "usage_log"],
        Some(b"from stdin"),
        Some(KEY_HEX),
    ));
    let got = sv(&["get", &vault, &r2, "--purpose", "certificate_validation"]);
    assert!(got.status.success());
    assert_eq!(got.stdout, b"\x00\x01binary\xff");
    assert_eq!(
        ok(&sv(&["get", &vault, &r1, "--purpose", "billing"])),
        "{\"name\":\"Alice\"}"
    );
    assert_eq!(
        ok(&sv(&["get", &vault, &r3, "--purpose", "security"])),
        "from stdin"
    );
    fails(
        &sv(&["get", &vault, &r1, "--purpose", "marketing"]),
        "PurposeDenied",
    );
    ok(&sv(&["delete", &vault, &r3]));
    let out = sv(&["get", &vault, &r3, "--purpose", "security"]);
    fails(&out, "Erased");
    assert_eq!(out.status.code(), Some(4));
    let stats: serde_json::Value = serde_json::from_str(&ok(&sv(&["stats", &vault]))).unwrap();
    assert_eq!(stats["subjects_live"], 1);
    assert_eq!(stats["records_live"], 2);
    let receipt: serde_json::Value =
        serde_json::from_str(&ok(&sv(&["erase", &vault, &alice]))).unwrap();
    assert_eq!(receipt["subject"], alice.as_str());
    // The account and the certificate are kept on an erasure request,
    // restricted to legal claims.
    assert_eq!(receipt["subject_key_destroyed"], false);
    assert_eq!(receipt["retained"][0]["category"], "account");
    assert_eq!(receipt["retained"][1]["category"], "certificate");
    fails(
        &sv(&["get", &vault, &r1, "--purpose", "billing"]),
        "Restricted",
    );
    // legal_claims is privileged: --privileged opens the vault so.
    fails(
        &sv(&["get", &vault, &r1, "--purpose", "legal_claims"]),
        "PurposeDenied",
    );
    assert_eq!(
        ok(&sv(&[
            "--privileged",
            "get",
            &vault,
            &r1,
            "--purpose",
            "legal_claims"
        ])),
        "{\"name\":\"Alice\"}"
    );
    let out = sv(&["subject", "find", &vault, "email", "alice@example.com"]);
    fails(&out, "NotFound");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn keys_come_from_a_file_or_the_environment_only() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let raw = dir.path().join("raw.key");
    std::fs::write(&raw, [0x4f; 32]).unwrap();
    let hex = dir.path().join("hex.key");
    std::fs::write(&hex, format!("{KEY_HEX}\n")).unwrap();
    for key_file in [&raw, &hex] {
        ok(&sv_with(
            &[
                "--key-file",
                key_file.to_str().unwrap(),
                "subject",
                "create",
                &vault,
            ],
            None,
            None,
        ));
    }
    fails(
        &sv_with(&["subject", "create", &vault], None, None),
        "no root key",
    );
    fails(
        &sv_with(&["subject", "create", &vault], None, Some("abcd")),
        "64 hex",
    );
    let wrong = "00".repeat(32);
    fails(
        &sv_with(&["subject", "create", &vault], None, Some(&wrong)),
        "WrongKey",
    );
    let short = dir.path().join("short.key");
    std::fs::write(&short, [1; 31]).unwrap();
    fails(
        &sv_with(
            &["--key-file", short.to_str().unwrap(), "stats", &vault],
            None,
            None,
        ),
        "InvalidArgument",
    );
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    fails(
        &sv(&["init", &vault, "--policy", &policy()]),
        "already a vault",
    );
    fails(
        &sv(&["put", &vault, "nothex", "account", "--data", "x"]),
        "malformed subject id",
    );
    let s = ok(&sv(&["subject", "create", &vault]));
    fails(
        &sv(&["put", &vault, &s, "nope", "--data", "x"]),
        "unknown category",
    );
    fails(
        &sv(&["subject", "create", &vault, "--identifier", "email"]),
        "KIND=VALUE",
    );
    fails(
        &sv(&["subject", "create", &vault, "--identifier", "email= "]),
        "empty",
    );
    fails(
        &sv(&["stats", dir.path().join("missing").to_str().unwrap()]),
        "no vault",
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[purposes.p]\n[categories.c]\nlegal_basis = \"whim\"\npurposes = [\"p\"]\n",
    )
    .unwrap();
    let other = dir.path().join("w").display().to_string();
    fails(
        &sv(&["init", &other, "--policy", bad.to_str().unwrap()]),
        "bad.toml:3",
    );
    assert!(
        !Path::new(&other).join("keys").exists(),
        "a refused init wrote nothing"
    );
}

#[test]
fn policy_set_checks_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let s = ok(&sv(&["subject", "create", &vault]));
    let r = ok(&sv(&["put", &vault, &s, "usage_log", "--data", "x"]));
    let small = dir.path().join("small.toml");
    std::fs::write(
        &small,
        "[purposes.p]\n[categories.account]\nlegal_basis = \"contract\"\npurposes = [\"p\"]\n",
    )
    .unwrap();
    fails(
        &sv(&["policy", "set", &vault, small.to_str().unwrap()]),
        "usage_log",
    );
    ok(&sv(&["delete", &vault, &r]));
    ok(&sv(&["policy", "set", &vault, small.to_str().unwrap()]));
}

#[test]
fn retention_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let s = ok(&sv(&["subject", "create", &vault]));
    let cert = ok(&sv(&["put", &vault, &s, "certificate", "--data", "CN=bob"]));
    ok(&sv(&[
        "event",
        &vault,
        &s,
        "last_certificate_end",
        "--at",
        "2027-06-30T10:00:00Z",
    ]));
    ok(&sv(&["flag", &vault, &s, "qualified_certificate", "on"]));
    // 15 years: still there in 2042-06, gone in 2042-07. Years ahead of
    // the clock: refused unless --force.
    fails(
        &sv(&["expire", &vault, "--now", "2042-06-30T00:00:00Z"]),
        "ahead of the clock",
    );
    let counts: serde_json::Value = serde_json::from_str(&ok(&sv(&[
        "expire",
        &vault,
        "--now",
        "2042-06-30T00:00:00Z",
        "--force",
    ])))
    .unwrap();
    assert_eq!(counts["records_expired"], 0);
    ok(&sv(&[
        "get",
        &vault,
        &cert,
        "--purpose",
        "certificate_validation",
    ]));
    ok(&sv(&["hold", &vault, &s, "on"]));
    fails(&sv(&["erase", &vault, &s]), "LegalHold");
    let counts: serde_json::Value = serde_json::from_str(&ok(&sv(&[
        "expire",
        &vault,
        "--now",
        "2287872000",
        "--force",
    ])))
    .unwrap();
    assert_eq!(counts["records_spared_by_hold"], 1);
    ok(&sv(&[
        "get",
        &vault,
        &cert,
        "--purpose",
        "certificate_validation",
    ]));
    ok(&sv(&["hold", &vault, &s, "off"]));
    fails(
        &sv(&["get", &vault, &cert, "--purpose", "certificate_validation"]),
        "Expired",
    );

    let t = ok(&sv(&["subject", "create", &vault]));
    fails(
        &sv(&["put", &vault, &t, "marketing_contact", "--data", "x"]),
        "PurposeDenied",
    );
    ok(&sv(&[
        "consent",
        &vault,
        &t,
        "marketing",
        "give",
        "--at",
        "1767225600",
    ]));
    let m = ok(&sv(&[
        "put",
        &vault,
        &t,
        "marketing_contact",
        "--data",
        "x",
    ]));
    ok(&sv(&["opt-out-of-sale", &vault, &t, "on"]));
    fails(
        &sv(&["get", &vault, &m, "--purpose", "sale"]),
        "PurposeDenied",
    );
    ok(&sv(&["restrict", &vault, &t, "on"]));
    fails(
        &sv(&["get", &vault, &m, "--purpose", "marketing"]),
        "Restricted",
    );
    ok(&sv(&["restrict", &vault, &t, "off"]));
    ok(&sv(&[
        "consent",
        &vault,
        &t,
        "marketing",
        "withdraw",
        "--at",
        "2026-02-01T00:00:00Z",
    ]));
    fails(
        &sv(&["get", &vault, &m, "--purpose", "marketing"]),
        "Erased",
    );

    fails(
        &sv(&["event", &vault, &t, "agreement_end", "--at", "tomorrow"]),
        "not a time",
    );
    fails(
        &sv(&["event", &vault, &t, "no_such_event", "--at", "0"]),
        "unknown event",
    );
    fails(
        &sv(&["flag", &vault, &t, "qualified_certificate", "maybe"]),
        "invalid value",
    );
}

#[test]
fn rights_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let s = ok(&sv(&[
        "subject",
        "create",
        &vault,
        "--identifier",
        "email=hana@example.com",
    ]));
    let r = ok(&sv(&[
        "put",
        &vault,
        &s,
        "account",
        "--data",
        "{\"name\":\"Hana\"}",
    ]));
    ok(&sv(&["get", &vault, &r, "--purpose", "billing"]));

    // An access request, answered with an export, then closed.
    let req = ok(&sv(&[
        "request",
        "open",
        &vault,
        &s,
        "access",
        "--at",
        "2026-01-31T09:00:00Z",
    ]));
    let doc: serde_json::Value = serde_json::from_str(&ok(&sv(&["export", &vault, &s]))).unwrap();
    assert_eq!(doc["records"][0]["data"]["name"], "Hana");
    assert_eq!(doc["disclosures"][0]["actor"], "cli");
    let overdue: serde_json::Value = serde_json::from_str(&ok(&sv(&[
        "request",
        "list",
        &vault,
        "--overdue-at",
        "2026-03-01T00:00:00Z",
    ])))
    .unwrap();
    assert_eq!(overdue[0]["id"], req.as_str());
    assert_eq!(overdue[0]["due"], 1772269200); // 2026-02-28T09:00:00Z
    ok(&sv(&[
        "request", "extend", &vault, &req, "--reason", "complex",
    ]));
    fails(
        &sv(&["request", "extend", &vault, &req, "--reason", "again"]),
        "already extended",
    );
    ok(&sv(&[
        "request",
        "close",
        &vault,
        &req,
        "--at",
        "2026-02-20T00:00:00Z",
    ]));
    fails(&sv(&["request", "close", &vault, &req]), "already closed");
    fails(
        &sv(&["request", "close", &vault, &"0".repeat(32)]),
        "NotFound",
    );
    let list: serde_json::Value =
        serde_json::from_str(&ok(&sv(&["request", "list", &vault]))).unwrap();
    assert_eq!(list[0]["extended"], true);

    // Erasure, with a receipt an auditor verifies without the root key.
    let pk = ok(&sv(&["receipt", "public-key", &vault]));
    let receipt = ok(&sv(&["erase", &vault, &s]));
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, &receipt).unwrap();
    let f = file.to_str().unwrap();
    ok(&sv_with(
        &["receipt", "verify", f, "--public-key", &pk],
        None,
        None,
    ));
    ok(&sv_with(
        &["receipt", "verify", "-"],
        Some(receipt.as_bytes()),
        None,
    ));
    let tampered = receipt.replacen(
        "\"identifiers_removed\": 1",
        "\"identifiers_removed\": 0",
        1,
    );
    assert_ne!(tampered, receipt);
    std::fs::write(&file, &tampered).unwrap();
    fails(
        &sv_with(&["receipt", "verify", f, "--public-key", &pk], None, None),
        "Corrupt",
    );

    let t = ok(&sv(&["subject", "create", &vault]));
    ok(&sv(&["restrict", &vault, &t, "on"]));
    ok(&sv(&["hold", &vault, &t, "on"]));
    fails(&sv(&["erase", &vault, &t]), "LegalHold");
    let report: serde_json::Value = serde_json::from_str(&ok(&sv(&[
        "--actor", "dpo-desk", "audit", "verify", &vault,
    ])))
    .unwrap();
    assert!(report["entries"].as_u64().unwrap() > 10);
    fails(
        &sv(&["--actor", "Hana Smith", "stats", &vault]),
        "actor label",
    );
}

#[test]
fn rotate_key_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let s = ok(&sv(&[
        "subject",
        "create",
        &vault,
        "--identifier",
        "email=nia@example.com",
    ]));
    let r = ok(&sv(&["put", &vault, &s, "account", "--data", "nia"]));
    let new_key = "6b".repeat(32);
    let key_file = dir.path().join("new.key");
    std::fs::write(&key_file, &new_key).unwrap();
    ok(&sv(&[
        "rotate-key",
        &vault,
        "--new-key-file",
        key_file.to_str().unwrap(),
    ]));
    fails(
        &sv(&["get", &vault, &r, "--purpose", "billing"]),
        "WrongKey",
    );
    let out = sv_with(
        &["get", &vault, &r, "--purpose", "billing"],
        None,
        Some(&new_key),
    );
    assert_eq!(ok(&out), "nia");
    let found = sv_with(
        &["subject", "find", &vault, "email", "nia@example.com"],
        None,
        Some(&new_key),
    );
    assert_eq!(ok(&found), s);
}

#[test]
fn compact_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let keep = ok(&sv(&["subject", "create", &vault]));
    let gone = ok(&sv(&["subject", "create", &vault]));
    let kept = ok(&sv(&[
        "put",
        &vault,
        &keep,
        "usage_log",
        "--data",
        "still here",
    ]));
    ok(&sv(&[
        "put",
        &vault,
        &gone,
        "usage_log",
        "--data",
        "soon gone",
    ]));
    ok(&sv(&["erase", &vault, &gone]));
    let report: serde_json::Value = serde_json::from_str(&ok(&sv(&["compact", &vault]))).unwrap();
    assert!(report["entries"].as_u64().unwrap() > 0, "{report}");
    assert!(report["bytes_after"].as_u64().unwrap() > 0, "{report}");
    let got = ok(&sv(&["get", &vault, &kept, "--purpose", "security"]));
    assert!(got.contains("still here"), "{got}");
    ok(&sv(&["audit", "verify", &vault]));
    // A wrong key compacts nothing.
    fails(
        &sv_with(&["compact", &vault], None, Some(&"11".repeat(32))),
        "WrongKey",
    );
}

#[test]
fn every_operation_has_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let s = ok(&sv(&["subject", "create", &vault]));
    ok(&sv(&[
        "subject",
        "link",
        &vault,
        &s,
        "--identifier",
        "email=gina@example.com",
    ]));
    let idents: serde_json::Value =
        serde_json::from_str(&ok(&sv(&["subject", "identifiers", &vault, &s]))).unwrap();
    assert_eq!(idents, serde_json::json!([["email", "gina@example.com"]]));
    let r = ok(&sv(&[
        "put",
        &vault,
        &s,
        "account",
        "--data",
        "{\"plan\":\"basic\"}",
    ]));
    ok(&sv_with(
        &["update", &vault, &r],
        Some(b"{\"plan\":\"pro\"}"),
        Some(KEY_HEX),
    ));
    assert_eq!(
        ok(&sv(&["get", &vault, &r, "--purpose", "billing"])),
        "{\"plan\":\"pro\"}"
    );
    let records: serde_json::Value =
        serde_json::from_str(&ok(&sv(&["records", &vault, &s]))).unwrap();
    assert_eq!(records[0]["version"], 2);
    let lines = ok(&sv(&["scan", &vault, "account", "--purpose", "billing"]));
    let line: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(
        (line["id"].as_str(), &line["data"]),
        (Some(r.as_str()), &serde_json::json!({"plan": "pro"}))
    );
    fails(
        &sv(&["scan", &vault, "account", "--purpose", "marketing"]),
        "PurposeDenied",
    );
    ok(&sv(&["flag", &vault, &s, "employee", "on"]));
    let state: serde_json::Value =
        serde_json::from_str(&ok(&sv(&["subject", "state", &vault, &s]))).unwrap();
    assert_eq!(state["flags"], serde_json::json!(["employee"]));
    let d = ok(&sv(&[
        "post-mortem",
        &vault,
        &s,
        "hand-over",
        "--to",
        "Hal Example",
    ]));
    assert!(ok(&sv(&["get", &vault, &d, "--purpose", "post_mortem"])).contains("Hal Example"));
    fails(
        &sv(&["post-mortem", &vault, &s, "erase", "--to", "Hal"]),
        "InvalidArgument",
    );
    let entries: serde_json::Value =
        serde_json::from_str(&ok(&sv(&["audit", "list", &vault, "--subject", &s]))).unwrap();
    assert!(entries
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["op"] == "set_flag"));
    assert!(entries
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "cli"));
    ok(&sv(&[
        "expire",
        &vault,
        "--now",
        "2099-01-01T00:00:00Z",
        "--force",
    ]));
    let purged: u64 = ok(&sv(&["purge", &vault])).parse().unwrap();
    assert_eq!(purged, 0, "the expiry run's own purge went first");
    let stats: serde_json::Value = serde_json::from_str(&ok(&sv(&["stats", &vault]))).unwrap();
    assert_eq!(stats["vault_id"].as_str().map(str::len), Some(32));
}

/// Personal data need not be on the command line (where `ps` shows it):
/// identifiers, lookups and reasons from a file or stdin.
#[test]
fn personal_data_from_stdin_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let s = ok(&sv_with(
        &["subject", "create", &vault, "--identifiers-from", "-"],
        Some(b"email=Hana@Example.com\ncustomer_no=C-77\n"),
        Some(KEY_HEX),
    ));
    let found = ok(&sv_with(
        &["subject", "find", &vault, "email"],
        Some(b"hana@example.com\n"),
        Some(KEY_HEX),
    ));
    assert_eq!(found, s);
    let file = dir.path().join("ident");
    std::fs::write(&file, "phone=+44 20 7946 0000\n").unwrap();
    ok(&sv(&[
        "subject",
        "link",
        &vault,
        &s,
        "--identifier-from",
        file.to_str().unwrap(),
    ]));
    assert_eq!(
        ok(&sv(&[
            "subject",
            "find",
            &vault,
            "phone",
            "+44 20 7946 0000"
        ])),
        s
    );
    let req = ok(&sv(&["request", "open", &vault, &s, "access"]));
    ok(&sv_with(
        &["request", "extend", &vault, &req, "--reason-from", "-"],
        Some(b"the archive must be searched by hand"),
        Some(KEY_HEX),
    ));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&sv(&["request", "list", &vault]))).unwrap();
    assert_eq!(
        list[0]["extension_reason"],
        "the archive must be searched by hand"
    );
    // One of the two forms, not both, not neither.
    assert!(!sv(&["subject", "link", &vault, &s]).status.success());
}

/// A stale data/ is refused, by every command, with nothing destroyed;
/// `repair --accept-stale-data` is the operator's explicit decision.
#[test]
fn a_stale_data_copy_is_refused_until_the_operator_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let a = ok(&sv(&["subject", "create", &vault]));
    let ra = ok(&sv(&["put", &vault, &a, "account", "--data", "a"]));
    let data = Path::new(&vault).join("data");
    let old = dir.path().join("old-data");
    copy_dir(&data, &old);
    let b = ok(&sv(&["subject", "create", &vault]));
    let rb = ok(&sv(&["put", &vault, &b, "account", "--data", "b"]));
    let new = dir.path().join("new-data");
    std::fs::rename(&data, &new).unwrap();
    copy_dir(&old, &data);
    for args in [
        vec!["stats", &vault],
        vec!["get", &vault, &ra, "--purpose", "billing"],
    ] {
        let out = sv(&args);
        fails(&out, "older than");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--accept-stale-data"));
    }
    // Nothing was destroyed: the newer data/ back, b reads.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&new, &data).unwrap();
    assert_eq!(ok(&sv(&["get", &vault, &rb, "--purpose", "billing"])), "b");
    // Accepting the old copy: a is there, b is lost.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&old, &data);
    ok(&sv(&["repair", &vault, "--accept-stale-data"]));
    assert_eq!(ok(&sv(&["get", &vault, &ra, "--purpose", "billing"])), "a");
    fails(
        &sv(&["get", &vault, &rb, "--purpose", "billing"]),
        "NotFound",
    );
    ok(&sv(&["repair", &vault]));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
