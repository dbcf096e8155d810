//! Who may do what: the server's client list (`clients.toml`).
//!
//! ```toml
//! [clients.billing]
//! token_sha256 = "<64 hex: SHA-256 of the bearer token>"   # or unix_uid = 1000, or tls_subject = "CN=billing"
//! operations = ["read", "write"]     # read | write | erase | rights | admin
//! purposes = ["billing"]             # purposes it may read for; ["*"] for all
//! categories = ["account"]           # categories it may write; ["*"] for all
//! privileged = false                 # may read for privileged purposes
//! ```
//!
//! Each client proves who it is in exactly one way. A request carrying a
//! bearer token is the client whose `token_sha256` is the token's SHA-256
//! (every token client is compared, in constant time, so the time taken
//! tells nothing of which came close), or nobody: a wrong token never falls
//! back to the connection's peer uid. Without a token, a TLS connection is
//! the client named by its certificate's subject, a Unix-socket connection
//! the client of its peer uid (`SO_PEERCRED`). The client's name is the
//! audit actor of its calls, so it follows the actor rules (letters, digits
//! and `_.:-`, at most 64).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use shredvault::{Error, ErrorKind, Result};
use subtle::ConstantTimeEq;

/// What a client may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Reads: records (for its purposes), lists, lookups, stats.
    Read,
    /// Writes: subjects, records (of its categories), identifiers.
    Write,
    /// Erasures: of a subject or a record, expiry runs.
    Erase,
    /// The rights and the facts: consent, events, flags, hold,
    /// restriction, opt-out, requests, export.
    Rights,
    /// The vault itself: policy, key rotation, compaction, the audit log.
    Admin,
}

impl Class {
    fn parse(name: &str) -> Option<Class> {
        Some(match name {
            "read" => Class::Read,
            "write" => Class::Write,
            "erase" => Class::Erase,
            "rights" => Class::Rights,
            "admin" => Class::Admin,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Erase => "erase",
            Class::Rights => "rights",
            Class::Admin => "admin",
        }
    }
}

/// A set of names, or all of them (`["*"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Names {
    All,
    Only(BTreeSet<String>),
}

impl Names {
    fn from(list: Vec<String>) -> Names {
        if list.iter().any(|n| n == "*") {
            Names::All
        } else {
            Names::Only(list.into_iter().collect())
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            Names::All => true,
            Names::Only(set) => set.contains(name),
        }
    }
}

/// How a client proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The SHA-256 of its bearer token.
    Token([u8; 32]),
    /// The peer uid of its Unix-socket connections.
    Uid(u32),
    /// Its TLS client certificate's subject (e.g. `CN=billing`).
    TlsSubject(String),
}

/// One client and its grant.
#[derive(Clone, Debug)]
pub struct Client {
    pub name: String,
    pub proof: Proof,
    pub operations: BTreeSet<Class>,
    pub purposes: Names,
    pub categories: Names,
    pub privileged: bool,
}

impl Client {
    pub fn may(&self, class: Class) -> bool {
        self.operations.contains(&class)
    }
}

/// The client list.
#[derive(Clone, Debug)]
pub struct Clients {
    list: Vec<Client>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    clients: BTreeMap<String, ClientForm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientForm {
    token_sha256: Option<String>,
    unix_uid: Option<u32>,
    tls_subject: Option<String>,
    operations: Vec<String>,
    #[serde(default)]
    purposes: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    privileged: bool,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

impl Clients {
    /// Reads and checks a client list.
    pub fn load(path: &Path) -> Result<Clients> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Clients::parse(&text).map_err(|e| invalid(format!("{}: {}", path.display(), e.message())))
    }

    /// Parses a client list: each client has exactly one proof, known
    /// operations, a name fit for the audit log; no two clients share a
    /// proof.
    pub fn parse(text: &str) -> Result<Clients> {
        let form: FileForm = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut list = Vec::new();
        for (name, c) in form.clients {
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
            if !name_ok {
                return Err(invalid(format!(
                    "client {name:?}: a name is 1 to 64 letters, digits or _.:- (it is the audit actor)"
                )));
            }
            let mut proofs = Vec::new();
            if let Some(hex_digest) = &c.token_sha256 {
                let bytes = hex::decode(hex_digest)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                let Some(digest) = bytes else {
                    return Err(invalid(format!(
                        "client {name}: token_sha256 is 64 hex digits (the SHA-256 of the token)"
                    )));
                };
                proofs.push(Proof::Token(digest));
            }
            if let Some(uid) = c.unix_uid {
                proofs.push(Proof::Uid(uid));
            }
            if let Some(subject) = &c.tls_subject {
                proofs.push(Proof::TlsSubject(subject.clone()));
            }
            if proofs.len() != 1 {
                return Err(invalid(format!(
                    "client {name}: exactly one of token_sha256, unix_uid, tls_subject"
                )));
            }
            let mut operations = BTreeSet::new();
            for op in &c.operations {
                let class = Class::parse(op).ok_or_else(|| {
                    invalid(format!(
                        "client {name}: unknown operation {op:?} (read, write, erase, rights, admin)"
                    ))
                })?;
                operations.insert(class);
            }
            let proof = proofs.pop().expect("one proof");
            if list.iter().any(|other: &Client| other.proof == proof) {
                return Err(invalid(format!(
                    "client {name}: another client proves itself the same way"
                )));
            }
            list.push(Client {
                name,
                proof,
                operations,
                purposes: Names::from(c.purposes),
                categories: Names::from(c.categories),
                privileged: c.privileged,
            });
        }
        Ok(Clients { list })
    }

    /// The client called `name`.
    pub fn named(&self, name: &str) -> Option<&Client> {
        self.list.iter().find(|c| c.name == name)
    }

    /// The client a connection and its request prove to be, if any (see
    /// the module doc for the order).
    pub fn authenticate(
        &self,
        bearer: Option<&str>,
        tls_subject: Option<&str>,
        peer_uid: Option<u32>,
    ) -> Option<&Client> {
        if let Some(token) = bearer {
            let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
            let mut found = None;
            for c in &self.list {
                if let Proof::Token(want) = &c.proof {
                    if bool::from(want.ct_eq(digest.as_ref())) {
                        found = Some(c);
                    }
                }
            }
            return found;
        }
        if let Some(subject) = tls_subject {
            return self
                .list
                .iter()
                .find(|c| matches!(&c.proof, Proof::TlsSubject(s) if s == subject));
        }
        let uid = peer_uid?;
        self.list
            .iter()
            .find(|c| matches!(c.proof, Proof::Uid(u) if u == uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(token: &str) -> String {
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            token.as_bytes(),
        ))
    }

    #[test]
    fn each_proof_finds_its_client_and_nothing_else() {
        let text = format!(
            r#"
            [clients.billing]
            token_sha256 = "{}"
            operations = ["read", "write"]
            purposes = ["billing"]
            categories = ["account"]

            [clients.ops]
            unix_uid = 1000
            operations = ["admin"]

            [clients.validator]
            tls_subject = "CN=validator"
            operations = ["read"]
            purposes = ["*"]
            privileged = true
            "#,
            sha("s3cret")
        );
        let c = Clients::parse(&text).unwrap();
        let name = |c: Option<&Client>| c.map(|c| c.name.clone());
        assert_eq!(
            name(c.authenticate(Some("s3cret"), None, Some(1000))),
            Some("billing".into())
        );
        // A wrong token is nobody, even from a known uid.
        assert_eq!(name(c.authenticate(Some("s3cre"), None, Some(1000))), None);
        assert_eq!(
            name(c.authenticate(None, None, Some(1000))),
            Some("ops".into())
        );
        assert_eq!(name(c.authenticate(None, None, Some(1001))), None);
        assert_eq!(
            name(c.authenticate(None, Some("CN=validator"), None)),
            Some("validator".into())
        );
        assert_eq!(name(c.authenticate(None, Some("CN=other"), None)), None);
        let billing = c.authenticate(Some("s3cret"), None, None).unwrap();
        assert!(billing.may(Class::Write) && !billing.may(Class::Erase));
        assert!(billing.purposes.contains("billing") && !billing.purposes.contains("marketing"));
        assert!(billing.categories.contains("account") && !billing.categories.contains("x"));
        let v = c.authenticate(None, Some("CN=validator"), None).unwrap();
        assert!(v.purposes.contains("anything") && v.privileged);
    }

    #[test]
    fn a_bad_list_is_refused_with_the_reason() {
        for (text, says) in [
            ("[clients.a]\noperations = [\"read\"]\n", "exactly one"),
            (
                "[clients.a]\nunix_uid = 1\ntls_subject = \"CN=a\"\noperations = []\n",
                "exactly one",
            ),
            ("[clients.a]\nunix_uid = 1\noperations = [\"fly\"]\n", "unknown operation"),
            ("[clients.a]\ntoken_sha256 = \"abc\"\noperations = []\n", "64 hex"),
            ("[clients.\"Jane Doe\"]\nunix_uid = 1\noperations = []\n", "audit actor"),
            (
                "[clients.a]\nunix_uid = 1\noperations = []\n[clients.b]\nunix_uid = 1\noperations = []\n",
                "same way",
            ),
            ("[clients.a]\nunix_uid = 1\noperations = []\ncolour = 1\n", "unknown field"),
        ] {
            let err = Clients::parse(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            assert!(err.message().contains(says), "{text}: {err}");
        }
    }
}
