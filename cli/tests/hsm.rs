//! The root key in a PKCS#11 token from the command line (issue 17), as an
//! operator runs it against SoftHSM2: `init --root-key URI --create-key`,
//! commands with `--root-key` or a URI in `SHREDVAULT_ROOT_KEY`, `rotate-key
//! --new-root-key URI --create-key`, `retire-key URI --vault V`, and a
//! keystore copy from before the retired key opening with nothing.
//!
//! Without SoftHSM2 this says so and passes, unless `SV_REQUIRE_SOFTHSM=1`
//! (the test script sets it after installing SoftHSM2).

use std::path::Path;

mod common;
use common::{copy_dir, fails, ok, Token};

#[test]
fn an_operator_keeps_the_root_key_in_a_token_and_retires_it() {
    let Some(t) = Token::new() else { return };
    let work = tempfile::tempdir().unwrap();
    let vault = work.path().join("v").display().to_string();
    let policy = format!("{}/../example-policy.toml", env!("CARGO_MANIFEST_DIR"));
    let (first, second) = (t.uri("root-2026-11"), t.uri("root-2026-12"));

    // --create-key needs a URI; a URI naming no object fails cleanly.
    fails(
        &t.sv(
            &["init", &vault, "--policy", &policy, "--root-key", &first],
            None,
        ),
        "WrongKey",
    );
    ok(&t.sv(
        &[
            "init",
            &vault,
            "--policy",
            &policy,
            "--root-key",
            &first,
            "--create-key",
        ],
        None,
    ));
    let subject = ok(&t.sv(&["subject", "create", &vault], Some(&first)));
    let record = ok(&t.sv(
        &[
            "--root-key",
            &first,
            "put",
            &vault,
            &subject,
            "account",
            "--data",
            "in the token",
        ],
        None,
    ));
    assert_eq!(
        ok(&t.sv(
            &["get", &vault, &record, "--purpose", "billing"],
            Some(&first)
        )),
        "in the token"
    );
    // An erasure, whose completion is checked along the way.
    let leaving = ok(&t.sv(&["subject", "create", &vault], Some(&first)));
    ok(&t.sv(
        &["put", &vault, &leaving, "job_application", "--data", "cv"],
        Some(&first),
    ));
    let receipt = work.path().join("receipt.json");
    std::fs::write(
        &receipt,
        ok(&t.sv(&["erase", &vault, &leaving], Some(&first))),
    )
    .unwrap();
    let receipt = receipt.display().to_string();
    let complete = |key: &str| -> serde_json::Value {
        serde_json::from_str(&ok(
            &t.sv(&["receipt", "complete", &vault, &receipt], Some(key))
        ))
        .unwrap()
    };
    assert_eq!(complete(&first)["complete"], false);
    let before = work.path().join("before");
    copy_dir(Path::new(&vault), &before);

    // Rotation to a new token key, made by the same command.
    ok(&t.sv(
        &[
            "--root-key",
            &first,
            "rotate-key",
            &vault,
            "--new-root-key",
            &second,
            "--create-key",
        ],
        None,
    ));
    fails(
        &t.sv(
            &["get", &vault, &record, "--purpose", "billing"],
            Some(&first),
        ),
        "WrongKey",
    );
    // The key in use cannot retire; naming no vault is refused.
    fails(
        &t.sv(&["retire-key", &second, "--vault", &vault], None),
        "still needed",
    );
    fails(&t.sv(&["retire-key", &first], None), "InvalidArgument");
    assert_eq!(complete(&second)["complete"], false);
    ok(&t.sv(&["retire-key", &first, "--vault", &vault], None));
    let statement = complete(&second);
    assert_eq!(statement["complete"], true, "{statement}");
    // Signed like a receipt: `receipt verify` checks it.
    let public_key = ok(&t.sv(&["receipt", "public-key", &vault], Some(&second)));
    let file = work.path().join("statement.json");
    std::fs::write(&file, statement.to_string()).unwrap();
    ok(&t.sv(
        &[
            "receipt",
            "verify",
            &file.display().to_string(),
            "--public-key",
            &public_key,
        ],
        None,
    ));
    assert_eq!(
        ok(&t.sv(
            &["get", &vault, &record, "--purpose", "billing"],
            Some(&second)
        )),
        "in the token"
    );
    // The copy from before opens with nothing.
    let before = before.display().to_string();
    let e = fails(
        &t.sv(
            &["get", &before, &record, "--purpose", "billing"],
            Some(&first),
        ),
        "WrongKey",
    );
    assert!(e.contains("retired"), "{e}");
    fails(
        &t.sv(
            &["get", &before, &record, "--purpose", "billing"],
            Some(&second),
        ),
        "WrongKey",
    );
}
