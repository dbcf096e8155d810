//! The command line as an operator uses it: ids on stdout, one-line reasons
//! on stderr, exit status.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{copy_dir, fails, ok};

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

/// `serve` and `--url`: the operator's commands through a server, the
/// same output; a refused read is Forbidden; SIGTERM stops it cleanly.
#[test]
fn commands_through_a_server() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let socket = dir.path().join("sv.sock");
    let sha = |t: &str| {
        let out = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(t.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let clients = dir.path().join("clients.toml");
    std::fs::write(
        &clients,
        format!(
            "[clients.billing]\ntoken_sha256 = \"{}\"\noperations = [\"read\", \"write\"]\npurposes = [\"billing\"]\ncategories = [\"account\"]\n\n[clients.operator]\nunix_uid = {uid}\noperations = [\"read\", \"write\", \"erase\", \"admin\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\n",
            sha("billing-token")
        ),
    )
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "billing-token\n").unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_shredvault"))
        .args(["serve", &vault, "--listen"])
        .arg(format!("unix:{}", socket.display()))
        .arg("--clients")
        .arg(&clients)
        .env("SHREDVAULT_ROOT_KEY", KEY_HEX)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let url = format!("unix://{}", socket.display());
    let t = token.display().to_string();
    let remote = |args: &[&str], stdin: Option<&[u8]>| {
        let mut all = vec!["--url", &url, "--token-file", &t];
        all.extend_from_slice(args);
        sv_with(&all, stdin, None)
    };
    let subject = ok(&remote(&["subject", "create"], None));
    let record = ok(&remote(&["put", &subject, "account"], Some(b"from stdin")));
    assert_eq!(
        ok(&remote(&["get", &record, "--purpose", "billing"], None)),
        "from stdin"
    );
    fails(
        &remote(&["get", &record, "--purpose", "marketing"], None),
        "Forbidden",
    );
    fails(&remote(&["erase", &subject], None), "Forbidden");
    // Without a token: the connection's user, the operator.
    // A scan, streamed: the operator's uid may read every purpose.
    let other = ok(&remote(&["subject", "create"], None));
    ok(&remote(&["put", &other, "account"], Some(b"{\"n\": 2}")));
    let lines = ok(&sv_with(
        &["--url", &url, "scan", "account", "--purpose", "billing"],
        None,
        None,
    ));
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.contains("\"encoding\":\"json\""), "{lines}");
    let stats = ok(&sv_with(&["--url", &url, "stats"], None, None));
    assert!(stats.contains("vault_id"), "{stats}");
    let receipt = ok(&sv_with(&["--url", &url, "erase", &subject], None, None));
    assert!(receipt.contains(&subject));
    fails(
        &sv_with(&["--url", &url, "repair"], None, None),
        "not served",
    );
    // Compaction while serving (the operator holds the admin grant); the
    // erased subject's record stays unreadable, the other reads back.
    let report = ok(&sv_with(&["--url", &url, "compact"], None, None));
    assert!(report.contains("bytes_after"), "{report}");
    assert!(ok(&remote(&["scan", "account", "--purpose", "billing"], None)).contains("\"n\""));
    fails(&remote(&["compact"], None), "Forbidden");
    fails(
        &remote(&["scan", "account", "--purpose", "marketing"], None),
        "Forbidden",
    );
    // SIGTERM: the server finishes, closes the vault, removes its socket.
    let pid = server.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
    let mut log = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(
        !log.contains("from stdin"),
        "record data in the server's log"
    );
    // The vault opens locally again: the erased subject's record is gone.
    let out = sv(&["get", &vault, &record, "--purpose", "billing"]);
    assert!(!out.status.success());
}

/// A server process, killed when the test ends (a failing one too).
struct Server(std::process::Child);

impl Server {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(vault: &str, socket: &Path, clients: &Path) -> Server {
    start_server_with(vault, socket, clients, &[])
}

fn start_server_with(vault: &str, socket: &Path, clients: &Path, more: &[&str]) -> Server {
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_shredvault"))
            .args(["serve", vault, "--listen"])
            .arg(format!("unix:{}", socket.display()))
            .arg("--clients")
            .arg(clients)
            .args(more)
            .env("SHREDVAULT_ROOT_KEY", KEY_HEX)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The old socket file may still be there after a kill: wait for an
    // answer, not for the file.
    for _ in 0..1000 {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the server did not start");
}

/// The server killed with SIGKILL under load from several clients: the
/// clients get `Io`, then reconnect to the restarted server by themselves;
/// every acknowledged put is there, and an erasure stays.
#[test]
fn a_server_killed_under_load_loses_nothing_acknowledged() {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let socket = dir.path().join("sv.sock");
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let clients = dir.path().join("clients.toml");
    std::fs::write(
        &clients,
        format!("[clients.app]\nunix_uid = {uid}\noperations = [\"read\", \"write\", \"erase\", \"admin\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\n"),
    )
    .unwrap();
    let url = format!("unix://{}", socket.display());
    let mut server = start_server(&vault, &socket, &clients);
    let c = shredvault_client::Client::connect(&url, None).unwrap();
    let gone = c.create_subject(&[]).unwrap();
    let gone_record = c.put(&gone, "job_application", b"erase me").unwrap();
    c.erase_subject(&gone).unwrap();
    let mut acked: Vec<(shredvault::RecordId, Vec<u8>)> = Vec::new();
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let (url, stop, done) = (url.clone(), Arc::clone(&stop), Arc::clone(&done));
                std::thread::spawn(move || {
                    let c = shredvault_client::Client::connect(&url, None).unwrap();
                    let s = c.create_subject(&[]).unwrap();
                    let mut mine = Vec::new();
                    let mut errors = Vec::new();
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let data = format!("r{round}-t{t}-{n}").into_bytes();
                        match c.put(&s, "account", &data) {
                            Ok(r) => {
                                mine.push((r, data));
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => {
                                errors.push(e.kind());
                                std::thread::sleep(std::time::Duration::from_millis(20));
                            }
                        }
                    }
                    (c, mine, errors)
                })
            })
            .collect();
        // Under load: once the writers have some puts acknowledged.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while done.load(Ordering::SeqCst) < 100 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        assert!(
            done.load(Ordering::SeqCst) > 0,
            "round {round}: nothing acknowledged"
        );
        let mut clients_after = Vec::new();
        for w in writers {
            let (c, mine, errors) = w.join().unwrap();
            assert!(
                errors.iter().all(|k| *k == shredvault::ErrorKind::Io),
                "round {round}: {errors:?}"
            );
            acked.extend(mine);
            clients_after.push(c);
        }
        server = start_server(&vault, &socket, &clients);
        // The same clients, reconnecting by themselves.
        for c in &clients_after {
            c.stats().unwrap();
        }
        let c = &clients_after[0];
        for (r, data) in &acked {
            assert_eq!(
                &c.get(r, "billing").unwrap().data[..],
                &data[..],
                "round {round}"
            );
        }
        let err = c.get(&gone_record, "recruitment").unwrap_err();
        assert_eq!(err.kind(), shredvault::ErrorKind::Erased, "{err}");
    }
    shredvault_client::Client::connect(&url, None)
        .unwrap()
        .verify_audit()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}

/// The README's main command: the whole story, every claim checked (a
/// claim that does not hold fails the demo), the served part included.
#[test]
fn the_demo_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shredvault"))
        .arg("demo")
        .current_dir(dir.path())
        .env_remove("SHREDVAULT_ROOT_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("analytics asks for account_admin"), "{text}");
    // The C program and the Python script on the served vault at once
    // (the test script has a C compiler and python3).
    assert!(
        text.contains("C billing asks for marketing: SV_FORBIDDEN"),
        "{text}"
    );
    assert!(text.contains("served job: 100 subjects stored"), "{text}");
    assert!(text.contains("Done."), "{text}");
}

/// A bench run with `args` (`--json` among them): its JSON, once it exited
/// cleanly.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_shredvault"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `bench --server` runs end to end (short figures: the real run is an
/// operator's, see docs/performance.md) and reports every figure, with
/// PostgreSQL measured or the reason it was skipped.
#[test]
fn bench_server_reports_every_figure() {
    let v = bench_json(&["bench", "--server", "--seconds", "0.5", "--json"]);
    for key in ["durable_put_16_vs_1", "server_get_vs_inprocess"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    let pg_measured = v["server_get_vs_pg_select"].as_f64().is_some();
    assert!(
        pg_measured || v["raw"]["pg_skipped"].is_string(),
        "PostgreSQL neither measured nor skipped with a reason: {v}"
    );
}

/// The disaster story as an operator lives it: a served vault under load
/// (puts, updates, erasures, an expiry run, a consent withdrawal) is backed
/// up through the server while clients write; more of the same happens;
/// the machine is lost (the server killed, the vault directory deleted);
/// the backup and the exported ledger are restored into a new directory.
/// Nothing erased, deleted, expired or withdrawn after the backup reads
/// back; everything acknowledged before the backup and not erased since
/// does; the audit chain and the ledger verify.
#[test]
fn disaster_recovery_from_a_backup_and_the_ledger() {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let vault = init(dir.path());
    let socket = dir.path().join("sv.sock");
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let clients = dir.path().join("clients.toml");
    std::fs::write(
        &clients,
        format!("[clients.ops]\nunix_uid = {uid}\noperations = [\"read\", \"write\", \"erase\", \"rights\", \"admin\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\nprivileged = true\n"),
    )
    .unwrap();
    let url = format!("unix://{}", socket.display());
    // The ledger exported continuously by the server, off the machine.
    std::fs::create_dir_all(dir.path().join("offsite")).unwrap();
    let continuous = dir.path().join("offsite").join("continuous.jsonl");
    let server = start_server_with(
        &vault,
        &socket,
        &clients,
        &["--ledger-export", continuous.to_str().unwrap()],
    );
    let c = shredvault_client::Client::connect(&url, None).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    const YEAR4: i64 = 4 * 365 * 86_400 + 86_400; // four years, a leap day
    let day_end = (now / 86_400 + 1) * 86_400;

    // Before the backup.
    let alice = c.create_subject(&[("email", "alice@example.com")]).unwrap();
    let alice_acct = c.put(&alice, "account", b"alice-SECRET").unwrap();
    let bob = c.create_subject(&[("email", "bob@example.com")]).unwrap();
    let bob_usage = c.put(&bob, "usage_log", b"bob-usage-SECRET").unwrap();
    let bob_acct = c.put(&bob, "account", b"bob-acct-SECRET").unwrap();
    let carol = c.create_subject(&[]).unwrap();
    c.give_consent(&carol, "inquiry_response", now - 60)
        .unwrap();
    let carol_inquiry = c.put(&carol, "inquiry", b"carol-inquiry-SECRET").unwrap();
    let dan = c.create_subject(&[]).unwrap();
    let dan_deleted = c.put(&dan, "account", b"dan-deleted-SECRET").unwrap();
    let dan_kept = c.put(&dan, "account", b"dan-kept-SECRET").unwrap();
    let dan_rectified = c.put(&dan, "account", b"dan-old-SECRET").unwrap();
    c.update(&dan_rectified, b"dan-older-SECRET").unwrap();
    // A job application whose retention ends tonight: the expiry run after
    // the backup destroys its day's key.
    let eve = c.create_subject(&[]).unwrap();
    let eve_job = c.put(&eve, "job_application", b"eve-cv-SECRET").unwrap();
    c.record_event(&eve, "hiring_concluded", now - YEAR4 + 60)
        .unwrap();
    let gina = c.create_subject(&[]).unwrap();
    let gina_usage = c.put(&gina, "usage_log", b"gina-SECRET").unwrap();
    c.erase_subject(&gina).unwrap();

    // The backup, through the server, while four clients keep writing.
    let backup = dir.path().join("offsite").join("vault.svb");
    let stop = Arc::new(AtomicBool::new(false));
    let going = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (url, stop, going) = (url.clone(), Arc::clone(&stop), Arc::clone(&going));
            std::thread::spawn(move || {
                let c = shredvault_client::Client::connect(&url, None).unwrap();
                let s = c.create_subject(&[]).unwrap();
                let mut acked = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let data = format!("load-{t}-{n}");
                    let r = c.put(&s, "account", data.as_bytes()).unwrap();
                    acked.push((r, data, std::time::Instant::now()));
                    if n == 2 {
                        going.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    n += 1;
                }
                acked
            })
        })
        .collect();
    // Under load: once every writer has puts acknowledged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while going.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let backup_started = std::time::Instant::now();
    let info = ok(&sv_with(
        &["--url", &url, "backup", backup.to_str().unwrap()],
        None,
        None,
    ));
    assert!(info.contains("window_ends_at"), "{info}");
    stop.store(true, Ordering::SeqCst);
    let load: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(load
        .iter()
        .all(|w| w.iter().any(|(_, _, at)| *at < backup_started)));

    // After the backup: an erasure, a deletion, a rectification, a consent
    // withdrawal, an expiry run, new writes.
    c.erase_subject(&bob).unwrap();
    c.delete(&dan_deleted).unwrap();
    c.update(&dan_rectified, b"dan-new").unwrap();
    c.withdraw_consent(&carol, "inquiry_response", now).unwrap();
    let report = c.expire_with(day_end + 1, false).unwrap();
    assert!(report.days_destroyed >= 1, "{report:?}");
    let lost = c.put(&alice, "account", b"after-the-backup").unwrap();
    let ledger = dir.path().join("offsite").join("ledger.jsonl");
    let l = ledger.to_str().unwrap();
    ok(&sv_with(
        &["--url", &url, "ledger", "export", l],
        None,
        None,
    ));
    let public_key = c.receipt_public_key().unwrap();
    // The continuous export catches up within a second or two.
    let entries = |f: &Path| -> u64 {
        let out = sv(&["ledger", "verify", f.to_str().unwrap()]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map(|v| v["entries"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    let wanted = entries(&ledger);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while entries(&continuous) < wanted && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(entries(&continuous), wanted);

    // The machine is lost.
    drop(c);
    drop(server); // SIGKILL
    std::fs::remove_dir_all(dir.path().join("v")).unwrap();

    let restored = dir.path().join("restored").display().to_string();
    // No ledger: refused, saying what it risks.
    let err = fails(
        &sv(&["restore", backup.to_str().unwrap(), &restored]),
        "InvalidArgument",
    );
    assert!(err.contains("--no-ledger"), "{err}");
    // The continuously exported ledger is the one the machine's loss
    // leaves; it is enough.
    let report: serde_json::Value = serde_json::from_str(&ok(&sv(&[
        "restore",
        backup.to_str().unwrap(),
        &restored,
        "--ledger",
        continuous.to_str().unwrap(),
    ])))
    .unwrap();
    assert!(report["re_erased_subjects"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(bob.to_string())));
    assert_eq!(
        report["re_deleted_records"],
        serde_json::json!([dan_deleted.to_string()])
    );
    assert!(
        !report["re_expired_days"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(
        report["lost"]["rectified_records"],
        serde_json::json!([dan_rectified.to_string()])
    );

    let get = |r: &shredvault::RecordId, purpose: &str| {
        sv(&["get", &restored, &r.to_string(), "--purpose", purpose])
    };
    // Acknowledged before the backup, not erased since: back.
    assert_eq!(ok(&get(&alice_acct, "account_admin")), "alice-SECRET");
    assert_eq!(ok(&get(&dan_kept, "account_admin")), "dan-kept-SECRET");
    assert_eq!(
        ok(&get(&dan_rectified, "account_admin")),
        "dan-older-SECRET"
    );
    // The backup is one point: of each writer's puts (one after the
    // other), those in it are a prefix, holding every put acknowledged
    // before the backup began.
    for puts in &load {
        let held: Vec<bool> = puts
            .iter()
            .map(|(r, data, _)| {
                let out = get(r, "account_admin");
                out.status.success() && String::from_utf8_lossy(&out.stdout) == *data
            })
            .collect();
        let k = held.iter().take_while(|h| **h).count();
        assert!(held[k..].iter().all(|h| !h), "not a prefix: {held:?}");
        let before = puts
            .iter()
            .filter(|(_, _, at)| *at < backup_started)
            .count();
        assert!(
            k >= before,
            "{k} held, {before} acknowledged before the backup"
        );
    }
    // Erased, deleted, expired, withdrawn after the backup, or before it:
    // not back.
    fails(&get(&bob_usage, "security"), "Erased");
    fails(&get(&bob_acct, "account_admin"), "Restricted");
    fails(&get(&dan_deleted, "account_admin"), "Erased");
    fails(&get(&carol_inquiry, "inquiry_response"), "Erased");
    fails(&get(&eve_job, "recruitment"), "Expired");
    fails(&get(&gina_usage, "security"), "Erased");
    fails(
        &sv(&["subject", "find", &restored, "email", "bob@example.com"]),
        "NotFound",
    );
    // Written after the backup: lost, as the report says.
    assert!(!get(&lost, "account_admin").status.success());
    // The audit chain and the ledger verify; the ledger goes on.
    ok(&sv(&["audit", "verify", &restored]));
    assert_eq!(ok(&sv(&["receipt", "public-key", &restored])), public_key);
    ok(&sv(&["ledger", "verify", l, "--public-key", &public_key]));
    ok(&sv(&["erase", &restored, &alice.to_string()]));
    ok(&sv(&["ledger", "export", &restored, l]));
    let summary = ok(&sv(&["ledger", "verify", l, "--public-key", &public_key]));
    assert!(summary.contains("\"entries\""), "{summary}");
}

/// A vault whose records live in PostgreSQL, as an operator runs it: made
/// with `init --store`, then every command finds the database through the
/// vault directory; a backup of it restores (into a directory vault) with
/// the erasures made since re-applied; `serve --store` naming another
/// database is refused; `bench --server --store postgres` measures the
/// served vault on the same PostgreSQL pgbench drives.
#[test]
fn an_operator_keeps_the_records_in_postgres() {
    let Some(pg) = shredvault::postgres::for_tests() else {
        return;
    };
    let url = shredvault::postgres::fresh_schema(pg, "cli");
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("v").display().to_string();
    ok(&sv(&[
        "init",
        &vault,
        "--policy",
        &policy(),
        "--store",
        &url,
    ]));
    assert!(!dir.path().join("v").join("data").exists());
    let alice = ok(&sv(&[
        "subject",
        "create",
        &vault,
        "--identifier",
        "email=alice.pgcli@example.com",
    ]));
    let bob = ok(&sv(&["subject", "create", &vault]));
    let a = ok(&sv(&[
        "put",
        &vault,
        &alice,
        "usage_log",
        "--data",
        "alice's",
    ]));
    let b = ok(&sv(&["put", &vault, &bob, "account", "--data", "bob's"]));
    assert_eq!(
        ok(&sv(&["get", &vault, &b, "--purpose", "billing"])),
        "bob's"
    );
    let backup = dir.path().join("v.backup");
    ok(&sv(&["backup", &vault, backup.to_str().unwrap()]));
    // After the backup: alice erased; the ledger exported.
    ok(&sv(&["erase", &vault, &alice]));
    fails(&sv(&["get", &vault, &a, "--purpose", "security"]), "Erased");
    let ledger = dir.path().join("ledger.jsonl");
    ok(&sv(&["ledger", "export", &vault, ledger.to_str().unwrap()]));
    ok(&sv(&["audit", "verify", &vault]));
    let restored = dir.path().join("restored").display().to_string();
    ok(&sv(&[
        "restore",
        backup.to_str().unwrap(),
        &restored,
        "--ledger",
        ledger.to_str().unwrap(),
    ]));
    assert_eq!(
        ok(&sv(&["get", &restored, &b, "--purpose", "billing"])),
        "bob's"
    );
    fails(
        &sv(&["get", &restored, &a, "--purpose", "security"]),
        "Erased",
    );
    // serve checks the database it is given against the vault's.
    let other = shredvault::postgres::fresh_schema(pg, "cli");
    let clients = dir.path().join("clients.toml");
    std::fs::write(
        &clients,
        "[clients.ops]\nunix_uid = 0\noperations = [\"read\"]\npurposes = [\"*\"]\ncategories = [\"*\"]\n",
    )
    .unwrap();
    let socket = format!("unix:{}", dir.path().join("s.sock").display());
    fails(
        &sv(&[
            "serve",
            &vault,
            "--listen",
            &socket,
            "--clients",
            clients.to_str().unwrap(),
            "--store",
            &other,
        ]),
        "InvalidArgument",
    );
    let v = bench_json(&[
        "bench",
        "--server",
        "--store",
        "postgres",
        "--seconds",
        "0.3",
        "--json",
    ]);
    assert_eq!(v["store"], "postgres", "{v}");
    for key in ["server_get_vs_pg_select", "server_put_durable_vs_pg_insert"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
}
