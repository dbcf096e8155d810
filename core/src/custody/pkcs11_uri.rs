//! RFC 7512 PKCS#11 URIs: how an operator names the root key object in a
//! token, the convention of p11-kit and OpenSSL:
//!
//! ```text
//! pkcs11:token=shredvault;object=root-2026-12?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/shredvault/pin
//! ```
//!
//! What the vault reads: path attributes `token`, `serial`, `manufacturer`,
//! `model`, `slot-id` (which token), `object` and `id` (which key; at least
//! one), `type` (if given, `secret-key`); query attributes `module-path`
//! (required: the vault does not search p11-kit's module list),
//! `pin-source` (`file:` path or an absolute path, RFC 7512 §2.4; the file's
//! first line is the PIN) or `pin-value`. Values are percent-decoded. The
//! other attributes of the RFC (`library-*`, `slot-description`,
//! `slot-manufacturer`, `module-name`) are accepted and ignored; `x-`
//! vendor attributes too. Anything else, a repeated attribute, or a bad
//! percent escape is `InvalidArgument`: a typo must not name another key.
//!
//! The PIN itself never appears in `Debug` or in error messages.

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Where the PIN comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PinSource {
    /// No PIN given: logging in fails with a clear `WrongKey`.
    None,
    /// `pin-source=file:/path`: the file's first line.
    File(PathBuf),
    /// `pin-value=...` in the URI itself.
    Value(Zeroizing<String>),
}

/// A parsed PKCS#11 URI naming one secret-key object.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Pkcs11Uri {
    pub token: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    pub module_path: PathBuf,
    pub pin: PinSource,
    /// The URI as given (it may hold a `pin-value`: never printed).
    pub text: Zeroizing<String>,
}

impl Pkcs11Uri {
    /// The object labelled `label` in the same token, found and opened the
    /// same way (a backup's day key beside the root key). It has no text
    /// form of its own: `text` is empty.
    pub fn with_object(&self, label: &str) -> Pkcs11Uri {
        Pkcs11Uri {
            object: Some(label.to_string()),
            id: None,
            text: Zeroizing::new(String::new()),
            ..self.clone()
        }
    }

    /// Parses `text` (which must start with `pkcs11:`).
    pub fn parse(text: &str) -> Result<Pkcs11Uri> {
        let bad = |why: String| Error::invalid(format!("PKCS#11 URI: {why}"));
        let rest = text
            .trim()
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("it must start with `pkcs11:`".into()))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri {
            token: None,
            serial: None,
            manufacturer: None,
            model: None,
            slot_id: None,
            object: None,
            id: None,
            module_path: PathBuf::new(),
            pin: PinSource::None,
            text: Zeroizing::new(text.trim().to_owned()),
        };
        let mut module_path = None;
        let mut seen = Vec::new();
        let attributes = path.split(';').map(|a| (a, false)).chain(
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|a| (a, true)),
        );
        for (position, (attribute, in_query)) in attributes.enumerate() {
            if attribute.is_empty() {
                continue;
            }
            // A query attribute's text may be a piece of a PIN (a `&` in a
            // `pin-value` not percent-encoded): never echoed.
            let shown = |text: &str| match in_query {
                false => format!("`{}`", printable(text)),
                true => format!("number {} (in the query)", position + 1),
            };
            let (name, raw) = attribute
                .split_once('=')
                .ok_or_else(|| bad(format!("attribute {} has no value", shown(attribute))))?;
            if seen.contains(&name) {
                return Err(bad(format!("attribute {} is given twice", shown(name))));
            }
            seen.push(name);
            let value = decode(raw).map_err(|why| bad(format!("attribute `{name}`: {why}")))?;
            let text = || {
                String::from_utf8(value.to_vec())
                    .map_err(|_| bad(format!("attribute `{name}` is not UTF-8")))
            };
            match (in_query, name) {
                (false, "token") => uri.token = Some(text()?),
                (false, "serial") => uri.serial = Some(text()?),
                (false, "manufacturer") => uri.manufacturer = Some(text()?),
                (false, "model") => uri.model = Some(text()?),
                (false, "slot-id") => {
                    uri.slot_id = Some(
                        text()?
                            .parse()
                            .map_err(|_| bad("`slot-id` must be a number".into()))?,
                    )
                }
                (false, "object") => uri.object = Some(text()?),
                (false, "id") => uri.id = Some(value.to_vec()),
                (false, "type") => {
                    if text()? != "secret-key" {
                        return Err(bad(
                            "the root key is a secret key: `type` must be `secret-key`".into(),
                        ));
                    }
                }
                (false, "library-manufacturer")
                | (false, "library-description")
                | (false, "library-version")
                | (false, "slot-description")
                | (false, "slot-manufacturer")
                | (true, "module-name") => {}
                (true, "module-path") => module_path = Some(PathBuf::from(text()?)),
                (true, "pin-source") => {
                    let source = text()?;
                    let file = source.strip_prefix("file:").unwrap_or(&source);
                    if !file.starts_with('/') {
                        return Err(bad(
                            "`pin-source` must be `file:` and an absolute path".into()
                        ));
                    }
                    uri.pin = PinSource::File(PathBuf::from(file));
                }
                (true, "pin-value") => uri.pin = PinSource::Value(Zeroizing::new(text()?)),
                (_, vendor) if vendor.starts_with("x-") => {}
                (_, other) => {
                    return Err(bad(format!("unknown attribute {}", shown(other))));
                }
            }
        }
        if seen.contains(&"pin-source") && seen.contains(&"pin-value") {
            return Err(bad("give `pin-source` or `pin-value`, not both".into()));
        }
        uri.module_path = module_path.ok_or_else(|| {
            bad(
                "`module-path` is required (e.g. ?module-path=/usr/lib/softhsm/libsofthsm2.so)"
                    .into(),
            )
        })?;
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad(
                "name the key with `object=` (its label) or `id=`".into()
            ));
        }
        Ok(uri)
    }

    /// The PIN to log in with (`None`: none was given).
    pub fn pin(&self) -> Result<Option<Zeroizing<String>>> {
        match &self.pin {
            PinSource::None => Ok(None),
            PinSource::Value(v) => Ok(Some(v.clone())),
            PinSource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    Error::io(format!("reading the PIN file {}", path.display()), e)
                })?);
                let line = text.lines().next().unwrap_or("");
                Ok(Some(Zeroizing::new(line.to_owned())))
            }
        }
    }

    /// The URI without its PIN: every attribute the vault reads but
    /// `pin-value` (a `pin-source` file's path stays). Recorded in the
    /// audit log at a rotation, to find and check the key later.
    pub fn public_name(&self) -> String {
        let mut path = Vec::new();
        let mut put = |name: &str, value: Option<&[u8]>| {
            if let Some(v) = value {
                path.push(format!("{name}={}", encode(v)));
            }
        };
        put("token", self.token.as_deref().map(str::as_bytes));
        put("serial", self.serial.as_deref().map(str::as_bytes));
        put(
            "manufacturer",
            self.manufacturer.as_deref().map(str::as_bytes),
        );
        put("model", self.model.as_deref().map(str::as_bytes));
        let slot = self.slot_id.map(|s| s.to_string());
        put("slot-id", slot.as_deref().map(str::as_bytes));
        put("object", self.object.as_deref().map(str::as_bytes));
        put("id", self.id.as_deref());
        let mut s = format!(
            "pkcs11:{}?module-path={}",
            path.join(";"),
            encode(self.module_path.as_os_str().as_encoded_bytes())
        );
        if let PinSource::File(f) = &self.pin {
            s.push_str(&format!(
                "&pin-source=file:{}",
                encode(f.as_os_str().as_encoded_bytes())
            ));
        }
        s
    }

    /// The key as the operator would recognise it (no PIN): token and
    /// object, for messages.
    pub fn describe(&self) -> String {
        let mut s = String::from("pkcs11:");
        let mut parts = Vec::new();
        if let Some(t) = &self.token {
            parts.push(format!("token={}", printable(t)));
        }
        if let Some(o) = &self.object {
            parts.push(format!("object={}", printable(o)));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", hex::encode(id)));
        }
        s.push_str(&parts.join(";"));
        s
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({})", self.describe())
    }
}

/// `text` with control characters escaped, for messages.
fn printable(text: &str) -> String {
    text.escape_debug().to_string()
}

/// Percent-encodes an attribute value: all but letters, digits and
/// `-._~:/@`.
fn encode(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() || b"-._~:/@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes an attribute value (RFC 3986 §2.1).
fn decode(raw: &str) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let bytes = raw.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a `%` must be followed by two hex digits".to_string())?;
            out.push(pair);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn the_issue_s_example_parses() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=shredvault;object=root-2026-12?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/shredvault/pin",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("shredvault"));
        assert_eq!(u.object.as_deref(), Some("root-2026-12"));
        assert_eq!(
            u.module_path,
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert!(u.pin == PinSource::File("/etc/shredvault/pin".into()));
        assert_eq!(u.describe(), "pkcs11:token=shredvault;object=root-2026-12");
    }

    #[test]
    fn values_are_percent_decoded() {
        let u = Pkcs11Uri::parse(&format!(
            "pkcs11:token=My%20Token;object=a%3Bb;id=%01%ff;type=secret-key;slot-id=7?{MODULE}&pin-value=12%2634"
        ))
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.object.as_deref(), Some("a;b"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 255][..]));
        assert_eq!(u.slot_id, Some(7));
        assert_eq!(u.pin().unwrap().unwrap().as_str(), "12&34");
        // The PIN is never printed.
        assert!(!format!("{u:?}").contains("12&34"));
    }

    #[test]
    fn the_public_name_parses_back_without_the_pin() {
        let u = Pkcs11Uri::parse(&format!(
            "pkcs11:token=My%20Token;serial=42;slot-id=3;object=a%3Bb=c;id=%01%ff?{MODULE}&pin-value=1234"
        ))
        .unwrap();
        let name = u.public_name();
        assert!(!name.contains("1234"), "{name}");
        let back = Pkcs11Uri::parse(&name).unwrap();
        assert_eq!(back.token, u.token);
        assert_eq!(back.serial, u.serial);
        assert_eq!(back.slot_id, u.slot_id);
        assert_eq!(back.object, u.object);
        assert_eq!(back.id, u.id);
        assert_eq!(back.module_path, u.module_path);
        assert!(back.pin == PinSource::None);
        let with_file = Pkcs11Uri::parse(&format!(
            "pkcs11:object=k?{MODULE}&pin-source=file:/etc/sv/pin"
        ))
        .unwrap();
        assert!(
            Pkcs11Uri::parse(&with_file.public_name()).unwrap().pin
                == PinSource::File("/etc/sv/pin".into())
        );
    }

    #[test]
    fn ignored_attributes_of_the_rfc_and_vendor_attributes_are_accepted() {
        Pkcs11Uri::parse(&format!(
            "pkcs11:library-manufacturer=x;library-version=2.6;slot-description=s;object=k;x-acme=1?{MODULE}&module-name=softhsm2"
        ))
        .unwrap();
    }

    #[test]
    fn mistakes_are_refused() {
        for (uri, says) in [
            ("token=t;object=k", "pkcs11:"),
            ("pkcs11:token=t;object=k", "module-path"),
            (&format!("pkcs11:token=t?{MODULE}"), "object="),
            (&format!("pkcs11:object=k;object=j?{MODULE}"), "twice"),
            (
                &format!("pkcs11:objet=k?{MODULE}"),
                "unknown attribute `objet`",
            ),
            (&format!("pkcs11:object=k%2?{MODULE}"), "two hex digits"),
            (&format!("pkcs11:object=k%+5?{MODULE}"), "two hex digits"),
            (
                &format!("pkcs11:object=k;type=private?{MODULE}"),
                "secret-key",
            ),
            (
                &format!("pkcs11:object=k?{MODULE}&pin-source=pin.txt"),
                "absolute",
            ),
            (
                &format!("pkcs11:object=k?{MODULE}&pin-value=1&pin-source=/p"),
                "not both",
            ),
            (&format!("pkcs11:object?{MODULE}"), "no value"),
            (&format!("pkcs11:object=k;slot-id=x?{MODULE}"), "number"),
            (&format!("pkcs11:object=%ff?{MODULE}"), "UTF-8"),
            // A path attribute in the query is not one the vault reads;
            // query attributes are named by position (they may hold a PIN).
            (
                &format!("pkcs11:object=k?{MODULE}&token=t"),
                "unknown attribute number 3",
            ),
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{uri}");
            assert!(e.to_string().contains(says), "{uri}: {e}");
        }
    }

    #[test]
    fn no_piece_of_a_pin_is_in_a_message() {
        // A `&` in a PIN not percent-encoded splits it into attributes.
        for uri in [
            format!("pkcs11:object=k?{MODULE}&pin-value=12&secret34"),
            format!("pkcs11:object=k?{MODULE}&pin-value=12&sec=ret34"),
            format!("pkcs11:object=k?{MODULE}&pin-value=12&pin-value=secret34"),
        ] {
            let e = Pkcs11Uri::parse(&uri).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{uri}");
            assert!(!e.to_string().contains("sec"), "{e}");
        }
    }

    #[test]
    fn the_pin_file_s_first_line_is_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "4321\nrest\n").unwrap();
        let u = Pkcs11Uri::parse(&format!(
            "pkcs11:object=k?{MODULE}&pin-source=file:{}",
            path.display()
        ))
        .unwrap();
        assert_eq!(u.pin().unwrap().unwrap().as_str(), "4321");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(u.pin().unwrap_err().kind(), crate::ErrorKind::Io);
    }
}
