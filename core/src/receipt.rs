//! Signed erasure receipts.
//!
//! A receipt is a JSON object. Its signature is Ed25519 (ring) over
//! `"shredvault receipt v1\n"` (`domains::RECEIPT_CONTEXT`) followed by the
//! receipt's canonical JSON without the `signature` field: keys sorted, no
//! whitespace (serde_json's `Value` keeps object keys sorted). The signing
//! key's seed is a random vault key in the custody (created with the vault
//! and kept across root-key rotations), so a vault signs the same way after
//! every reopen and every rotation; the public key
//! ([`crate::Vault::receipt_public_key`]) lets an auditor check a receipt
//! without the root key.
//!
//! A verifier re-canonicalizes whatever JSON it is handed, so reformatting
//! a receipt (indentation, key order) does not break it; changing any value
//! does.

use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde_json::Value;

use crate::crypto::SecretKey;
use crate::error::{Error, ErrorKind, Result};

use crate::domains::RECEIPT_CONTEXT as CONTEXT;

/// The message a signature covers.
fn signed_message(context: &[u8], receipt: &Value) -> Result<Vec<u8>> {
    let Value::Object(map) = receipt else {
        return Err(Error::invalid("a signed statement is a JSON object"));
    };
    let mut map = map.clone();
    map.remove("signature");
    let mut out = context.to_vec();
    serde_json::to_writer(&mut out, &Value::Object(map))
        .map_err(|e| Error::internal(format!("serializing a receipt: {e}")))?;
    Ok(out)
}

fn key_pair(seed: &SecretKey) -> Result<Ed25519KeyPair> {
    Ed25519KeyPair::from_seed_unchecked(seed.expose())
        .map_err(|_| Error::internal("the receipt key could not be built"))
}

/// The public key of the receipt seed, hex.
pub(crate) fn public_key_hex(seed: &SecretKey) -> Result<String> {
    Ok(hex::encode(key_pair(seed)?.public_key().as_ref()))
}

/// Adds `public_key` and `signature` to a receipt object.
pub(crate) fn sign(seed: &SecretKey, receipt: Value) -> Result<Value> {
    sign_in(CONTEXT, seed, receipt)
}

/// Adds `public_key` and `signature` to a JSON object, the signature over
/// `context` and the object's canonical JSON (a receipt's, or another
/// statement's: an erasure ledger's entry, under its own context).
pub(crate) fn sign_in(context: &[u8], seed: &SecretKey, mut receipt: Value) -> Result<Value> {
    let pair = key_pair(seed)?;
    let Value::Object(map) = &mut receipt else {
        return Err(Error::internal("a receipt is a JSON object"));
    };
    map.insert(
        "public_key".into(),
        Value::String(hex::encode(pair.public_key().as_ref())),
    );
    let message = signed_message(context, &receipt)?;
    let sig = pair.sign(&message);
    if let Value::Object(map) = &mut receipt {
        map.insert("signature".into(), Value::String(hex::encode(sig.as_ref())));
    }
    Ok(receipt)
}

/// Checks a receipt's signature. `public_key` (hex, 64 characters): the key
/// the auditor trusts; the receipt's own `public_key` field must match it.
/// `None` checks against the receipt's own key, which proves the receipt is
/// intact but not who signed it. Returns the parsed receipt.
///
/// Errors: malformed JSON or key is `InvalidArgument`; a receipt that is not
/// signed by the key, or was altered, is `Corrupt`, naming which.
pub fn verify_receipt(json: &str, public_key: Option<&str>) -> Result<Value> {
    verify_in(CONTEXT, "receipt", json, public_key)
}

/// [`verify_receipt`] for a statement signed with [`sign_in`] under
/// `context`; `what` names it in errors.
pub(crate) fn verify_in(
    context: &[u8],
    what: &str,
    json: &str,
    public_key: Option<&str>,
) -> Result<Value> {
    // Duplicate keys are refused: a reader (or a JSON library) that takes
    // the first of two `"subject"` fields would see another subject than
    // the one signed.
    let Strict(receipt) = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("the {what} is not JSON: {e}")))?;
    let field = |name: &str| -> Result<Vec<u8>> {
        let text = receipt
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::corrupt(format!("the {what} has no {name} field")))?;
        hex::decode(text).map_err(|_| Error::corrupt(format!("the {what}'s {name} is not hex")))
    };
    let embedded = field("public_key")?;
    let signature_bytes = field("signature")?;
    let key = match public_key {
        None => embedded,
        Some(hex_key) => {
            let trusted = hex::decode(hex_key.trim())
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| Error::invalid("a public key is 64 hex characters"))?;
            if trusted != embedded {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("the {what} names another public key than the one given: not signed by this vault"),
                ));
            }
            trusted
        }
    };
    let message = signed_message(context, &receipt)?;
    signature::UnparsedPublicKey::new(&signature::ED25519, &key)
        .verify(&message, &signature_bytes)
        .map_err(|_| {
            Error::corrupt(format!(
                "the {what}'s signature does not match its contents: it was altered"
            ))
        })?;
    Ok(receipt)
}

/// A JSON value parsed with duplicate object keys refused, at any depth.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice"
                )));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::{public_key_hex, sign, verify_receipt};
    use crate::crypto::SecretKey;
    use crate::error::ErrorKind;

    #[test]
    fn a_signed_receipt_verifies_and_any_change_breaks_it() {
        let seed = SecretKey::from_array([9; 32]);
        let receipt =
            serde_json::json!({"subject": "ab", "erased": [{"category": "x", "records": 2}]});
        let signed = sign(&seed, receipt).unwrap();
        let text = serde_json::to_string_pretty(&signed).unwrap();
        let pk = public_key_hex(&seed).unwrap();
        verify_receipt(&text, Some(&pk)).unwrap();
        verify_receipt(&text, None).unwrap();
        let altered = text.replace("\"records\": 2", "\"records\": 3");
        assert_ne!(altered, text);
        assert_eq!(
            verify_receipt(&altered, Some(&pk)).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        let other = public_key_hex(&SecretKey::from_array([8; 32])).unwrap();
        assert_eq!(
            verify_receipt(&text, Some(&other)).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            verify_receipt("{", None).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    /// Failed before the fix: a second `"subject"` in front verified, and a
    /// reader taking the first saw another subject than the one signed.
    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let seed = SecretKey::from_array([9; 32]);
        let receipt =
            serde_json::json!({"subject": "ab", "erased": [{"category": "x", "records": 2}]});
        let text = serde_json::to_string(&sign(&seed, receipt).unwrap()).unwrap();
        let forged = text.replacen('{', "{\"subject\":\"cd\",", 1);
        let err = verify_receipt(&forged, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("twice"), "{err}");
        let nested = text.replace("\"records\":2", "\"records\":2,\"records\":5");
        assert_ne!(nested, text);
        assert_eq!(
            verify_receipt(&nested, None).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        // The untouched receipt still verifies through the strict parser.
        verify_receipt(&text, None).unwrap();
    }
}
