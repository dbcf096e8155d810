//! The adapters stay equal: every public operation of `Vault` (read from
//! the core's sources, so a new one cannot be forgotten here) is in the C
//! header, the Python stub and the command line, or the table says why it
//! is deliberately absent there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where an operation is in one adapter.
#[derive(Clone, Copy, Debug)]
enum At {
    /// Its name there: a C function, a Python method (or `Vault` itself),
    /// a command line (words of the command).
    Is(&'static str),
    /// Deliberately absent, and why.
    Absent(&'static str),
}

use At::{Absent, Is};

/// Every public `Vault` operation: (operation, C, Python, command line).
const PARITY: &[(&str, At, At, At)] = &[
    (
        "open",
        Is("sv_open"),
        Is("Vault"),
        Absent("every command opens the VAULT it names"),
    ),
    (
        "open_with",
        Is("sv_open_ex"),
        Is("Vault"),
        Absent("--actor is a global flag; every command is durable when it ends"),
    ),
    (
        "create",
        Absent("sv_open creates a vault when given a policy file"),
        Absent("Vault(path, policy=...) creates one"),
        Is("init"),
    ),
    (
        "open_existing",
        Absent("sv_open with a NULL policy refuses a missing vault"),
        Absent("Vault(path) without a policy refuses a missing vault"),
        Absent("every command but init opens an existing vault only"),
    ),
    (
        "exists",
        Absent("sv_open with a NULL policy says NotFound for a missing vault"),
        Absent("Vault(path) without a policy raises NotFoundError for a missing vault"),
        Absent("every command says NotFound (exit 3) for a missing vault"),
    ),
    (
        "still_locked",
        Absent("a server's check on its vault in PostgreSQL: an embedded handle holds its lock for its life"),
        Absent("a server's check on its vault in PostgreSQL: an embedded handle holds its lock for its life"),
        Absent("serve checks it every second and stops when the lock is lost"),
    ),
    (
        "reads_may_wait",
        Absent("a server's choice of thread for a read: an embedded caller's reads run on its own thread"),
        Absent("a server's choice of thread for a read: an embedded caller's reads run on its own thread"),
        Absent("serve asks it once, for where to run reads"),
    ),
    ("compact", Is("sv_compact"), Is("compact"), Is("compact")),
    (
        "compact_live",
        Absent(
            "a server runs it (`shredvault --url URL compact`); sv_compact compacts a closed vault",
        ),
        Absent(
            "a server runs it (`shredvault --url URL compact`); compact() compacts a closed vault",
        ),
        Is("compact"),
    ),
    (
        "acting_as",
        Absent("one caller per handle; a server names its callers"),
        Absent("one caller per handle; a server names its callers"),
        Absent("--actor names the one caller"),
    ),
    (
        "log_refused",
        Absent("a server's record of the calls it refused"),
        Absent("a server's record of the calls it refused"),
        Absent("a server's record of the calls it refused"),
    ),
    (
        "record_info",
        Absent("sv_records lists a subject's records with the same fields"),
        Absent("records(subject) lists them with the same fields"),
        Absent("records SUBJECT lists them with the same fields"),
    ),
    (
        "path",
        Absent("the caller named the path"),
        Is("path"),
        Absent("the operator named the path"),
    ),
    ("vault_id", Is("sv_vault_id"), Is("vault_id"), Is("stats")),
    (
        "policy",
        Absent("the caller holds its policy file; sv_set_policy replaces it"),
        Absent("the caller holds its policy file; set_policy replaces it"),
        Absent("the operator holds the policy file; policy set replaces it"),
    ),
    (
        "set_policy",
        Is("sv_set_policy"),
        Is("set_policy"),
        Is("policy set"),
    ),
    (
        "create_subject",
        Is("sv_subject_create"),
        Is("create_subject"),
        Is("subject create"),
    ),
    (
        "link_identifier",
        Is("sv_subject_link"),
        Is("link_identifier"),
        Is("subject link"),
    ),
    (
        "find_subject",
        Is("sv_subject_find"),
        Is("find_subject"),
        Is("subject find"),
    ),
    (
        "identifiers",
        Is("sv_identifiers"),
        Is("identifiers"),
        Is("subject identifiers"),
    ),
    (
        "subject_state",
        Is("sv_subject_state"),
        Is("subject_state"),
        Is("subject state"),
    ),
    ("put", Is("sv_put"), Is("put"), Is("put")),
    ("get", Is("sv_get"), Is("get"), Is("get")),
    ("update", Is("sv_update"), Is("update"), Is("update")),
    ("delete", Is("sv_delete"), Is("delete"), Is("delete")),
    ("records", Is("sv_records"), Is("records"), Is("records")),
    ("scan", Is("sv_scan_open"), Is("scan"), Is("scan")),
    (
        "erase_subject",
        Is("sv_erase_subject"),
        Is("erase_subject"),
        Is("erase"),
    ),
    (
        "receipt_public_key",
        Is("sv_receipt_public_key"),
        Is("receipt_public_key"),
        Is("receipt public-key"),
    ),
    (
        "record_event",
        Is("sv_record_event"),
        Is("record_event"),
        Is("event"),
    ),
    ("set_flag", Is("sv_set_flag"), Is("set_flag"), Is("flag")),
    (
        "give_consent",
        Is("sv_give_consent"),
        Is("give_consent"),
        Is("consent"),
    ),
    (
        "withdraw_consent",
        Is("sv_withdraw_consent"),
        Is("withdraw_consent"),
        Is("consent"),
    ),
    (
        "set_legal_hold",
        Is("sv_set_legal_hold"),
        Is("set_legal_hold"),
        Is("hold"),
    ),
    (
        "set_restricted",
        Is("sv_set_restricted"),
        Is("set_restricted"),
        Is("restrict"),
    ),
    (
        "set_opt_out_of_sale",
        Is("sv_set_opt_out_of_sale"),
        Is("set_opt_out_of_sale"),
        Is("opt-out-of-sale"),
    ),
    (
        "set_post_mortem_directive",
        Is("sv_set_post_mortem_directive"),
        Is("set_post_mortem_directive"),
        Is("post-mortem"),
    ),
    ("expire", Is("sv_expire"), Is("expire"), Is("expire")),
    (
        "expire_with",
        Is("sv_expire_ex"),
        Is("expire"),
        Is("expire"),
    ),
    (
        "rotate_blind_index",
        Is("sv_rotate_blind_index"),
        Is("rotate_blind_index"),
        Is("rotate-index"),
    ),
    (
        "accept_stale_data",
        Is("sv_accept_stale_data"),
        Is("accept_stale_data"),
        Is("repair"),
    ),
    (
        "warnings",
        Is("sv_warnings"),
        Is("warnings"),
        Absent("every command prints them on stderr"),
    ),
    ("purge", Is("sv_purge"), Is("purge"), Is("purge")),
    ("stats", Is("sv_stats"), Is("stats"), Is("stats")),
    (
        "flush",
        Is("sv_flush"),
        Is("flush"),
        Absent("every command is durable when it ends"),
    ),
    (
        "close",
        Is("sv_close"),
        Is("close"),
        Absent("every command closes the vault when it ends"),
    ),
    (
        "erasure_completion",
        Absent("an auditor's check, from the command line"),
        Absent("an auditor's check, from the command line"),
        Is("receipt complete"),
    ),
    ("backup", Is("sv_backup"), Is("backup"), Is("backup")),
    ("restore", Is("sv_restore"), Is("restore"), Is("restore")),
    (
        "export_ledger",
        Is("sv_ledger_export"),
        Is("export_ledger"),
        Is("ledger export"),
    ),
    (
        "ledger_entries",
        Absent("a server's continuous export asks it (`serve --ledger-export`)"),
        Absent("a server's continuous export asks it (`serve --ledger-export`)"),
        Absent("`serve --ledger-export FILE` exports continuously"),
    ),
    (
        "ledger_since",
        Absent("the server's half of a served export (sv_ledger_export calls it)"),
        Absent("the server's half of a served export (export_ledger calls it)"),
        Absent("the server's half of `shredvault --url URL ledger export`"),
    ),
    (
        "retire_root_key",
        Absent("an operator's step, where the token is: the command line"),
        Absent("an operator's step, where the token is: the command line"),
        Is("retire-key"),
    ),
    (
        "retire_root_key_with",
        Absent("an operator's step, where the token is: the command line"),
        Absent("an operator's step, where the token is: the command line"),
        Is("retire-key"),
    ),
    (
        "rotate_root_key",
        Is("sv_rotate_root_key"),
        Is("rotate_root_key"),
        Is("rotate-key"),
    ),
    (
        "verify_audit",
        Is("sv_verify_audit"),
        Is("verify_audit"),
        Is("audit verify"),
    ),
    (
        "audit_entries",
        Is("sv_audit_entries"),
        Is("audit_entries"),
        Is("audit list"),
    ),
    ("export", Is("sv_export"), Is("export"), Is("export")),
    (
        "open_request",
        Is("sv_open_request"),
        Is("open_request"),
        Is("request open"),
    ),
    (
        "extend_request",
        Is("sv_extend_request"),
        Is("extend_request"),
        Is("request extend"),
    ),
    (
        "close_request",
        Is("sv_close_request"),
        Is("close_request"),
        Is("request close"),
    ),
    (
        "requests",
        Is("sv_requests"),
        Is("requests"),
        Is("request list"),
    ),
];

/// Free functions of the crate that the adapters carry too.
const FREE: &[(&str, At, At, At)] = &[(
    "verify_receipt",
    Is("sv_verify_receipt"),
    Is("verify_receipt"),
    Is("receipt verify"),
)];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The names of `pub fn`s in `impl Vault` blocks under `dir`, leaving out
/// what only the `testing` feature compiles.
fn vault_operations(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            vault_operations(&path, out);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut in_vault = false;
        // Whether the attributes above the current item name `testing`.
        let mut testing = false;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("#[") {
                testing |= trimmed.contains("feature = \"testing\"");
                continue;
            }
            if trimmed.starts_with("///") || trimmed.starts_with("//!") {
                continue;
            }
            if line.starts_with("impl") && line.ends_with("Vault {") {
                in_vault = !testing;
            } else if line == "}" {
                in_vault = false;
            } else if let (true, Some(rest)) = (in_vault, line.strip_prefix("    pub fn ")) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !testing {
                    out.push(name);
                }
            }
            testing = false;
        }
    }
}

#[test]
fn every_vault_operation_is_in_the_table() {
    let mut ops = Vec::new();
    vault_operations(&root().join("core/src/vault"), &mut ops);
    ops.sort();
    ops.dedup();
    assert!(ops.len() > 30, "the parser found {ops:?}");
    let mut listed: Vec<&str> = PARITY.iter().map(|row| row.0).collect();
    listed.sort();
    let missing: Vec<&String> = ops
        .iter()
        .filter(|o| !listed.contains(&o.as_str()))
        .collect();
    let stale: Vec<&&str> = listed
        .iter()
        .filter(|l| !ops.iter().any(|o| o == *l))
        .collect();
    assert!(
        missing.is_empty(),
        "operations missing from the parity table: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "the parity table names operations Vault lacks: {stale:?}"
    );
}

#[test]
fn every_operation_is_where_the_table_says() {
    let header = std::fs::read_to_string(root().join("include/shredvault.h")).unwrap();
    let stub =
        std::fs::read_to_string(root().join("python/pysrc/shredvault/_shredvault.pyi")).unwrap();
    for (op, c, py, cli) in PARITY.iter().chain(FREE) {
        if let Is(name) = c {
            assert!(
                header.contains(&format!(" {name}(")),
                "{op}: {name} is not in the header"
            );
        }
        if let Is(name) = py {
            let found = stub.contains(&format!("def {name}("))
                || stub.contains(&format!("class {name}:"))
                || stub.contains(&format!("def {name}(self) -> "));
            assert!(found, "{op}: {name} is not in the Python stub");
        }
        if let Is(words) = cli {
            let out = Command::new(env!("CARGO_BIN_EXE_shredvault"))
                .args(words.split(' '))
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{op}: `shredvault {words}` is not a command"
            );
        }
        for at in [c, py, cli] {
            if let Absent(why) = at {
                assert!(why.len() > 10, "{op}: say why it is absent");
            }
        }
    }
}
