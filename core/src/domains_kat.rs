//! Known answers for every key derivation, MAC domain and associated data
//! in `domains`, and the receipt signature. Written (commit d7109c0) before
//! these were gathered into `domains`, from the code of that time: a value
//! here changes only with a new stored format.

use crate::crypto::{self, SecretKey};
use crate::custody::KeyKind;
use crate::domains;
use crate::ids::{RecordId, RequestId, SubjectId};
use crate::layout::LiveRecord;

fn h(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[test]
fn every_derivation_mac_and_aad_gives_its_known_answer() {
    let root = SecretKey::from_array([7; 32]);
    let (kek, index) = (domains::kek(&root), domains::index_key(&root));
    let vault_id = [0x11u8; 16];
    let subject_key = SecretKey::from_array([0x22; 32]);
    let day_key = SecretKey::from_array([0x33; 32]);
    let audit_key = SecretKey::from_array([0x44; 32]);
    let subject = SubjectId::from_bytes(&[0x55; 16]).unwrap();
    let record = RecordId::from_bytes(&[0x66; 16]).unwrap();
    let request = RequestId::from_bytes(&[0x77; 16]).unwrap();
    let journal_key = domains::journal_key(&audit_key);
    let receipt = crate::receipt::sign(
        &audit_key,
        serde_json::json!({"subject": "s", "erased_at": 1}),
    )
    .unwrap();
    let checks: Vec<(&str, String, &str)> = vec![
        (
            "KEK = HKDF(root, \"shredvault kek v1\")",
            h(kek.expose()),
            "KEK",
        ),
        (
            "index key = HKDF(root, \"blind index v1\")",
            h(index.expose()),
            "INDEX",
        ),
        (
            "keystore key check",
            h(&domains::key_check(&kek, &vault_id)),
            "KEY_CHECK",
        ),
        (
            "slot wrapping AAD",
            h(&domains::slot_aad(
                &vault_id,
                5,
                KeyKind::Retention as u8,
                0x0102030405060708,
            )),
            "WRAP_AAD",
        ),
        (
            "record key, no day",
            h(domains::record_key(&subject_key, None, &vault_id).expose()),
            "RECORD_OPEN",
        ),
        (
            "record key with a day key",
            h(domains::record_key(&subject_key, Some(&day_key), &vault_id).expose()),
            "RECORD_DAY",
        ),
        (
            "identifiers key",
            h(domains::identifiers_key(&subject_key, &vault_id).expose()),
            "IDENTIFIERS",
        ),
        (
            "request reason key",
            h(domains::reason_key(&subject_key, &vault_id).expose()),
            "REASON",
        ),
        (
            "blind-index MAC",
            h(&domains::blind_mac(
                &index,
                &vault_id,
                "email",
                "alice@example.com",
            )),
            "BLIND",
        ),
        (
            "record AAD with a day",
            h(&domains::record_aad(
                &vault_id,
                &record,
                &record_meta(Some(20_000)).view(),
            )),
            "RECORD_AAD",
        ),
        (
            "record AAD, no day",
            h(&domains::record_aad(
                &vault_id,
                &record,
                &record_meta(None).view(),
            )),
            "RECORD_AAD_OPEN",
        ),
        (
            "identifiers AAD",
            h(&domains::identifiers_aad(&vault_id, &subject)),
            "IDENTIFIERS_AAD",
        ),
        (
            "request reason AAD",
            h(&domains::reason_aad(&vault_id, &request)),
            "REASON_AAD",
        ),
        ("journal key", h(journal_key.expose()), "JOURNAL_KEY"),
        (
            "journal frame MAC",
            h(&domains::journal_frame_mac(&journal_key, 9, b"payload")),
            "FRAME_MAC",
        ),
        (
            "journal group MAC",
            h(&domains::journal_group_mac(&journal_key, 9, 2, 7, b"body")),
            "GROUP_MAC",
        ),
        (
            "audit block MAC",
            h(&domains::audit_block_mac(&audit_key, 128, 64, &[0x88; 32])),
            "BLOCK_MAC",
        ),
        (
            "audit link",
            h(&domains::audit_link(&[0x99; 32], b"entry")),
            "LINK",
        ),
        (
            "slot checksum",
            h(&crypto::checksum8(b"slot bytes")),
            "CHECKSUM8",
        ),
        (
            "receipt public key from its seed",
            crate::receipt::public_key_hex(&audit_key).unwrap(),
            "RECEIPT_PUB",
        ),
        (
            "receipt signature (its context and canonical JSON)",
            receipt["signature"].as_str().unwrap().to_string(),
            "RECEIPT_SIG",
        ),
    ];
    for (what, got, name) in checks {
        assert_eq!(
            got,
            known(name),
            "{what} changed: a stored format would no longer open"
        );
    }
}

fn record_meta(day: Option<i64>) -> LiveRecord {
    LiveRecord {
        subject: SubjectId::from_bytes(&[0x55; 16]).unwrap(),
        category: "account".into(),
        version: 3,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_500,
        subject_key_id: 0xdead_beef,
        day,
        sealed: vec![],
    }
}

/// The answers, computed by the code before the split.
fn known(name: &str) -> &'static str {
    match name {
        "KEK" => "20192501ac5509a7a46ea41cd76ea24d2a175552d01116fd57ddc414b5b73de0",
        "INDEX" => "a92292d63ee1228f606d0dd3ee64fac0ca4426dedd0a1b56cba8c08be164e6db",
        "KEY_CHECK" => "98f3b3d39a1d342d80c3bce6ae0d34b23678079c3bc0990beeb0c4b04aae9008",
        "WRAP_AAD" => "737620736c6f74207631111111111111111111111111111111110500000000000000020807060504030201",
        "RECORD_OPEN" => "7c836c9c595c4731733e9d41037aa102a58b5c65a9907e70c8b0d732d0905f0c",
        "RECORD_DAY" => "d825229ef94b37919e87a3625f1bcf443550d06ca8630402acaa85eade19ea82",
        "IDENTIFIERS" => "17c3a6111bbbd70567a7766535cf806adfa2140374901fde2513227ce99de78b",
        "REASON" => "15f05fc828ec65ca2334b2750c8bcb6fa6fd8a69b86043dc3e146021f1853c1b",
        "BLIND" => "aae3df927e71654c0f241dfc76f7b5e095e6dc28d5d31605170e7a5217625bbf",
        "RECORD_AAD" => "7376207265636f7264207631111111111111111111111111111111115555555555555555555555555555555566666666666666666666666666666666070000006163636f756e74030000000000000000f1536500000000f4f2536500000000efbeadde0000000001204e000000000000",
        "RECORD_AAD_OPEN" => "7376207265636f7264207631111111111111111111111111111111115555555555555555555555555555555566666666666666666666666666666666070000006163636f756e74030000000000000000f1536500000000f4f2536500000000efbeadde0000000000",
        "IDENTIFIERS_AAD" => "7376206964656e746966696572732076311111111111111111111111111111111155555555555555555555555555555555",
        "REASON_AAD" => "7376207265717565737420726561736f6e2076311111111111111111111111111111111177777777777777777777777777777777",
        "JOURNAL_KEY" => "ed04d2363a83814259c09cded5aa25cd9f43a54f9743d17e41240f6ad141b98c",
        "FRAME_MAC" => "98177af4131e41785545321c9f085110bc9ab364ac077b89a00406472a8d2fb8",
        // Computed apart from this code (Python's hmac, the same
        // length-prefixed parts), when the group format was introduced.
        "GROUP_MAC" => "002d927d3bee4e7171686275b85b0b8d6b3922e16ad6da310a4e6ff1d6e34a17",
        "BLOCK_MAC" => "bece118c8ea28b2f69f06c2d46e4beb6b962c54acf7cb41d4949c6aef5dae443",
        "LINK" => "41d281e99060acdf8cbe8bbcf4c1873c1dddf9be56b368c0af56bd444cef5ec1",
        "CHECKSUM8" => "f0b1dfcbe097cb95",
        "RECEIPT_PUB" => "d759793bbc13a2819a827c76adb6fba8a49aee007f49f2d0992d99b825ad2c48",
        "RECEIPT_SIG" => "6bd4cf5548e004538ae8dc9da61dcabecf7a46405780ac85cb6ffb48a9082a77aea14c4e0be7e83abeda266389ac45f57a266dea31b970c83fb369b746bd7f0c",
        other => panic!("no known answer named {other}"),
    }
}
