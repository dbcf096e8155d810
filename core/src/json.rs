//! JSON that may hold personal data (an export, a record's metadata):
//! serialized into a buffer allocated once at its exact size, so no
//! reallocation leaves a copy in freed memory, and zeroized on drop; and a
//! document's strings wiped before it is dropped.

use serde::Serialize;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, ErrorKind, Result};

/// Counts the bytes a serializer writes.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes into a slice of fixed capacity, refusing to grow it.
struct Fixed<'a>(&'a mut Vec<u8>);

impl std::io::Write for Fixed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > self.0.capacity() {
            return Err(std::io::Error::other("the JSON grew between two passes"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write(value: &impl Serialize, out: impl std::io::Write, pretty: bool) -> serde_json::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(out, value)
    } else {
        serde_json::to_writer(out, value)
    }
}

/// `value` as JSON in a zeroizing buffer of exactly its size (two passes:
/// the first counts).
pub fn to_vec_zeroizing(value: &impl Serialize, pretty: bool) -> Result<Zeroizing<Vec<u8>>> {
    let fail =
        |e: serde_json::Error| Error::new(ErrorKind::Internal, format!("serializing JSON: {e}"));
    let mut counter = Counter(0);
    write(value, &mut counter, pretty).map_err(fail)?;
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
    write(value, Fixed(&mut out), pretty).map_err(fail)?;
    Ok(out)
}

/// Wipes every string of a document (keys stay: they are field names),
/// before it is dropped.
pub fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A document wiped when dropped.
#[derive(Debug)]
pub struct WipedValue(pub Value);

impl Drop for WipedValue {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::{to_vec_zeroizing, zeroize_value};

    #[test]
    fn exact_capacity_and_same_text() {
        let doc = serde_json::json!({"a": [1, "two", {"b": null}], "c": "é\u{1}"});
        for pretty in [false, true] {
            let out = to_vec_zeroizing(&doc, pretty).unwrap();
            assert_eq!(out.len(), out.capacity());
            let plain = if pretty {
                serde_json::to_vec_pretty(&doc).unwrap()
            } else {
                serde_json::to_vec(&doc).unwrap()
            };
            assert_eq!(&out[..], &plain[..]);
        }
    }

    #[test]
    fn wipes_strings() {
        let mut doc = serde_json::json!({"a": ["secret"], "b": {"c": "more"}});
        zeroize_value(&mut doc);
        assert_eq!(doc, serde_json::json!({"a": [""], "b": {"c": ""}}));
    }
}
