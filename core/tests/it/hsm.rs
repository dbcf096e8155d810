//! The root key in a PKCS#11 token (issue 17), against SoftHSM2: a vault
//! opens, rotates and retires with a token key; the derivation inside the
//! token gives the known answers computed apart (openssl's AES-CMAC); every
//! failure is a clean error; the key's value is never in the vault's
//! process; a keystore copy from before a retired key opens with nothing;
//! kill -9 during a rotation to a token key leaves one key that opens
//! everything.
//!
//! Needs SoftHSM2 (`apt-get install softhsm2`): without it these tests say
//! so and pass, unless `SV_REQUIRE_SOFTHSM=1` (the test script sets it,
//! after installing SoftHSM2), when its absence fails them.

use crate::common;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{copy_dir, example_policy, root};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use shredvault::{ErrorKind, RootKey, Vault};

const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// A SoftHSM2 token directory in `dir` and the configuration naming it:
/// (the directory, the configuration file).
pub(crate) fn token_dir(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    (tokens, conf)
}

/// A SoftHSM2 token for this test process, in a temporary directory.
pub(crate) struct Hsm {
    _dir: tempfile::TempDir,
    module: PathBuf,
    pub(crate) pin_file: PathBuf,
}

pub(crate) fn hsm() -> Option<&'static Hsm> {
    static HSM: OnceLock<Option<Hsm>> = OnceLock::new();
    HSM.get_or_init(|| {
        let module = std::env::var_os("SV_SOFTHSM_MODULE")
            .map(PathBuf::from)
            .or_else(|| MODULES.iter().map(PathBuf::from).find(|p| p.exists()));
        let Some(module) = module else {
            assert!(
                std::env::var_os("SV_REQUIRE_SOFTHSM").is_none(),
                "SV_REQUIRE_SOFTHSM is set but SoftHSM2 is not installed"
            );
            eprintln!("SoftHSM2 is not installed: the PKCS#11 tests are not run (apt-get install softhsm2)");
            return None;
        };
        // A child process of these tests inherits the parent's token.
        if let Ok(conf) = std::env::var("SV_HSM_CHILD_DIR") {
            let dir = PathBuf::from(conf);
            return Some(Hsm {
                _dir: tempfile::tempdir().unwrap(),
                module,
                pin_file: dir.join("pin"),
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let (_, conf) = token_dir(dir.path());
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let status = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "shredvault"])
            .args(["--pin", "1234", "--so-pin", "5678"])
            .stdout(Stdio::null())
            .status()
            .expect("softhsm2-util runs");
        assert!(status.success());
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, "1234\n").unwrap();
        Some(Hsm {
            _dir: dir,
            module,
            pin_file,
        })
    })
    .as_ref()
}

impl Hsm {
    pub(crate) fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token=shredvault;object={object}?module-path={}&pin-source=file:{}",
            self.module.display(),
            self.pin_file.display()
        )
    }

    /// The test's own session on the token (the module is shared with the
    /// vault in this process: initialized once).
    pub(crate) fn session(&self) -> Session {
        static P11: OnceLock<Pkcs11> = OnceLock::new();
        let p11 = P11.get_or_init(|| {
            let p = Pkcs11::new(&self.module).unwrap();
            let _ = p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
            p
        });
        let slot = p11
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| p11.get_token_info(*s).unwrap().label() == "shredvault")
            .unwrap();
        let session = p11.open_rw_session(slot).unwrap();
        let _ = session.login(UserType::User, Some(&AuthPin::new("1234".into())));
        session
    }

    /// An AES key the test can read back: extractable and not sensitive,
    /// for this test only (the vault makes its keys neither). With `value`,
    /// that value; otherwise generated.
    fn readable_key(&self, label: &str, value: Option<&[u8; 32]>) -> [u8; 32] {
        let session = self.session();
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let key = match value {
            Some(v) => {
                template.push(Attribute::Value(v.to_vec()));
                session.create_object(&template).unwrap()
            }
            None => {
                template.push(Attribute::ValueLen(32.into()));
                session
                    .generate_key(&Mechanism::AesKeyGen, &template)
                    .unwrap()
            }
        };
        let attrs = session
            .get_attributes(key, &[AttributeType::Value])
            .unwrap();
        match attrs.as_slice() {
            [Attribute::Value(v)] => v.as_slice().try_into().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn objects_labelled(&self, label: &str) -> usize {
        self.session()
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .unwrap()
            .len()
    }
}

fn put_and_read(v: &Vault, text: &str) {
    let s = v.create_subject(&[("email", "ana@example.com")]).unwrap();
    let r = v.put(&s, "account", text.as_bytes()).unwrap();
    assert_eq!(
        v.get(&r, "billing").unwrap().data.as_slice(),
        text.as_bytes()
    );
}

#[test]
fn a_vault_lives_on_a_root_key_made_in_the_token() {
    let Some(hsm) = hsm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = RootKey::create_in_token(&hsm.uri("root-life")).unwrap();
    assert!(key.is_in_token());
    assert!(key.to_bytes().is_none());
    assert!(!format!("{key:?}").contains("1234"));
    let record;
    {
        let v = Vault::open(dir.path(), &key, Some(example_policy())).unwrap();
        let s = v.create_subject(&[]).unwrap();
        record = v.put(&s, "account", b"on the token").unwrap();
    }
    // Reopened from the URI alone (a new process would have only that).
    let again = RootKey::parse(&hsm.uri("root-life")).unwrap();
    let v = Vault::open(dir.path(), &again, None).unwrap();
    assert_eq!(
        v.get(&record, "billing").unwrap().data.as_slice(),
        b"on the token"
    );
    drop(v);
    // Another key, in bytes or in the token, does not open it.
    assert_eq!(
        Vault::open(dir.path(), &root(), None).unwrap_err().kind(),
        ErrorKind::WrongKey
    );
    let other = RootKey::create_in_token(&hsm.uri("root-life-other")).unwrap();
    assert_eq!(
        Vault::open(dir.path(), &other, None).unwrap_err().kind(),
        ErrorKind::WrongKey
    );
    // The object made by the vault is sensitive and not extractable.
    let session = hsm.session();
    let found = session
        .find_objects(&[Attribute::Label(b"root-life".to_vec())])
        .unwrap();
    let attrs = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Token(true)), "{attrs:?}");
    // Creating it twice is refused, and leaves the first.
    let e = RootKey::create_in_token(&hsm.uri("root-life")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(hsm.objects_labelled("root-life"), 1);
}

#[test]
fn the_token_derives_the_known_answers() {
    let Some(hsm) = hsm() else { return };
    let value: [u8; 32] = std::array::from_fn(|i| i as u8);
    hsm.readable_key("root-kat", Some(&value));
    let keys = RootKey::from_uri(&hsm.uri("root-kat"))
        .unwrap()
        .derived_keys_for_tests()
        .unwrap();
    // SP 800-108 counter mode, AES-CMAC: computed apart with
    // `openssl mac -cipher AES-256-CBC -macopt hexkey:0001..1f CMAC` over
    // [i]32 || label || 00 || [256]32, i = 1, 2.
    assert_eq!(
        hex(&keys[0]),
        "53a96923312ea305b612979cb7bd76271c9423bf7611f4ebcb5649842597566b",
        "KEK"
    );
    assert_eq!(
        hex(&keys[1]),
        "d21f06ee37b64deb05ca2232292384c980badd8fce03810b51f267b8dcaaa68c",
        "index key"
    );
    assert_eq!(
        hex(&keys[2]),
        "2bec020efc32d6e105d856606ddd5f0540f785e2fdb54181a93d44ded87b9bb2",
        "key-check key"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn token_failures_are_clean_errors() {
    let Some(hsm) = hsm() else { return };
    RootKey::create_in_token(&hsm.uri("root-fail")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module = hsm.module.display().to_string();
    let open = |uri: &str| {
        Vault::open(
            dir.path(),
            &RootKey::from_uri(uri).unwrap(),
            Some(example_policy()),
        )
        .map(|_| ())
        .unwrap_err()
    };
    for (uri, kind, says) in [
        (
            format!("pkcs11:token=shredvault;object=root-fail?module-path={module}&pin-value=9999"),
            ErrorKind::WrongKey,
            "PIN",
        ),
        (
            format!("pkcs11:token=shredvault;object=root-fail?module-path={module}"),
            ErrorKind::WrongKey,
            "no PIN",
        ),
        (
            format!("pkcs11:token=shredvault;object=no-such-key?module-path={module}&pin-value=1234"),
            ErrorKind::WrongKey,
            "not in its token",
        ),
        (
            format!("pkcs11:token=no-such-token;object=root-fail?module-path={module}&pin-value=1234"),
            ErrorKind::Io,
            "no token matches",
        ),
        (
            "pkcs11:token=shredvault;object=root-fail?module-path=/nonexistent/libp11.so&pin-value=1234".to_string(),
            ErrorKind::Io,
            "not there",
        ),
        (
            format!("pkcs11:token=shredvault;object=root-fail?module-path={module}&pin-source=file:/nonexistent/pin"),
            ErrorKind::Io,
            "PIN file",
        ),
    ] {
        let e = open(&uri);
        assert_eq!(e.kind(), kind, "{uri}: {e}");
        assert!(e.to_string().contains(says), "{uri}: {e}");
        assert!(!e.to_string().contains("1234"), "a PIN in a message: {e}");
    }
    // An object that is not an AES key allowed to sign.
    let session = hsm.session();
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::ValueLen(32.into()),
                Attribute::Sign(false),
                Attribute::Encrypt(true),
                Attribute::Label(b"root-nosign".to_vec()),
            ],
        )
        .unwrap();
    let e = open(&hsm.uri("root-nosign"));
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
    // None of these made a vault: the directory holds no keystore.
    assert!(!dir.path().join("keys/keystore").exists());
    // And the key is still there, usable.
    assert_eq!(hsm.objects_labelled("root-fail"), 1);
    Vault::open(
        dir.path(),
        &RootKey::from_uri(&hsm.uri("root-fail")).unwrap(),
        Some(example_policy()),
    )
    .unwrap();
}

#[test]
fn retiring_the_old_root_key_leaves_old_keystore_copies_nothing() {
    let Some(hsm) = hsm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let old = RootKey::create_in_token(&hsm.uri("root-old")).unwrap();
    let new = RootKey::create_in_token(&hsm.uri("root-new")).unwrap();
    let (record, subject);
    {
        let v = Vault::open(dir.path(), &old, Some(example_policy())).unwrap();
        subject = v.create_subject(&[]).unwrap();
        record = v.put(&subject, "account", b"kept").unwrap();
    }
    let before = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), before.path());
    // Retiring the key in use is refused, and destroys nothing.
    let e = Vault::retire_root_key(&old, &[dir.path()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("still needed"), "{e}");
    assert_eq!(hsm.objects_labelled("root-old"), 1);
    // Naming no vault is refused; so is a path without a vault.
    assert_eq!(
        Vault::retire_root_key(&old, &[]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        Vault::retire_root_key(&old, &[empty.path()])
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // A key in bytes is the caller's to destroy.
    assert_eq!(
        Vault::retire_root_key(&root(), &[dir.path()])
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    {
        let v = Vault::open(dir.path(), &old, None).unwrap();
        v.rotate_root_key(&new, &mut |_, _| {}).unwrap();
        // While the vault is open (a rotation could begin) nothing retires.
        let e = Vault::retire_root_key(&old, &[dir.path()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
        assert_eq!(hsm.objects_labelled("root-old"), 1);
    }
    Vault::retire_root_key(&old, &[dir.path()]).unwrap();
    assert_eq!(hsm.objects_labelled("root-old"), 0);
    let e = Vault::retire_root_key(&new, &[dir.path()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // The vault lives on under the new key.
    let v = Vault::open(dir.path(), &new, None).unwrap();
    assert_eq!(v.get(&record, "billing").unwrap().data.as_slice(), b"kept");
    drop(v);
    // The copy from before the rotation opens with nothing.
    let e = Vault::open(before.path(), &old, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
    assert!(e.to_string().contains("retired"), "{e}");
    let e = Vault::open(before.path(), &new, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
}

#[test]
fn a_rotation_under_way_to_a_key_keeps_it() {
    let Some(hsm) = hsm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let to = RootKey::create_in_token(&hsm.uri("root-pending")).unwrap();
    drop(Vault::open(dir.path(), &root(), Some(example_policy())).unwrap());
    // A rotation to `to` written out but cut short before its rename: a
    // second vault rotated to `to` lends its keystore as the pending one.
    let other = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), other.path());
    {
        let v = Vault::open(other.path(), &root(), None).unwrap();
        v.rotate_root_key(&to, &mut |_, _| {}).unwrap();
    }
    std::fs::copy(
        other.path().join("keys/keystore"),
        dir.path().join("keys/keystore.new"),
    )
    .unwrap();
    let e = Vault::retire_root_key(&to, &[dir.path()]).unwrap_err();
    assert!(e.to_string().contains("cut short"), "{e}");
    assert_eq!(hsm.objects_labelled("root-pending"), 1);
}

// ---- the root key's value is never in the vault's process -----------------

#[test]
fn memory_child_entry() {
    let Ok(vault) = std::env::var("SV_HSM_MEMORY_CHILD") else {
        return;
    };
    let hsm = hsm().unwrap();
    let key = RootKey::from_uri(&hsm.uri("root-scan")).unwrap();
    let v = Vault::open(&vault, &key, Some(example_policy())).unwrap();
    put_and_read(&v, "a record read back");
    println!("READY");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// Every readable mapping of process `pid`, searched for `needle`.
fn process_memory_holds(pid: u32, needle: &[u8]) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buf = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

#[test]
fn the_root_key_s_value_is_never_in_the_vault_s_memory() {
    let Some(hsm) = hsm() else { return };
    // Exported only here, from a key this test made extractable.
    let value = hsm.readable_key("root-scan", None);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hsm::memory_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SV_HSM_MEMORY_CHILD", dir.path())
        .env("SV_HSM_CHILD_DIR", hsm.pin_file.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let start = Instant::now();
    while !line.contains("READY") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
        assert!(start.elapsed() < Duration::from_secs(60));
    }
    let pid = child.id();
    // The scan finds what is there: the vault's path, as a control.
    let control = dir.path().display().to_string();
    assert!(
        process_memory_holds(pid, control.as_bytes()),
        "the scan reads nothing"
    );
    let found = process_memory_holds(pid, &value);
    drop(child.stdin.take());
    child.wait().unwrap();
    assert!(!found, "the root key's value is in the vault's process");
}

// ---- kill -9 during a rotation to a token key -------------------------------

#[test]
fn rotation_to_token_child_entry() {
    let Ok(dir) = std::env::var("SV_HSM_ROTATION_CHILD") else {
        return;
    };
    let hsm = hsm().unwrap();
    let v = Vault::open(&dir, &root(), None).unwrap();
    let to = RootKey::from_uri(&hsm.uri("root-rotated")).unwrap();
    // Logged in before the kill can come, and for the process's life:
    // SoftHSM2 rewrites its token file at every login (C_Login stores the
    // token's flags), and a process killed in that write leaves the token
    // unreadable for everyone (CKR_GENERAL_ERROR). A real token is not
    // damaged by a client's death; this test is about the vault's files. The
    // vault's own sessions then find the user logged in and write nothing.
    let _logged_in = hsm.session();
    println!("START");
    v.rotate_root_key(&to, &mut |_, _| {}).unwrap();
    println!("DONE");
}

#[test]
fn kill_9_during_a_rotation_to_a_token_key_leaves_one_key_that_opens_everything() {
    let Some(hsm) = hsm() else { return };
    let to = RootKey::create_in_token(&hsm.uri("root-rotated")).unwrap();
    let rounds: u64 = std::env::var("SV_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .map(|r| r.div_ceil(4))
        .unwrap_or(6);
    // The last round is not killed: the child's rotation must finish and
    // leave the token key in force (so a child that never got as far as
    // rotating cannot pass every round as "old").
    for round in 0..=rounds {
        let last = round == rounds;
        let dir = tempfile::tempdir().unwrap();
        let mut records = Vec::new();
        {
            let v = Vault::open(dir.path(), &root(), Some(example_policy())).unwrap();
            for i in 0..300 {
                let s = v.create_subject(&[]).unwrap();
                let data = format!("record {i}");
                records.push((v.put(&s, "account", data.as_bytes()).unwrap(), data));
            }
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hsm::rotation_to_token_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SV_HSM_ROTATION_CHILD", dir.path())
            .env("SV_HSM_CHILD_DIR", hsm.pin_file.parent().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The delay runs from the child's START (its vault open), not from
        // its spawn.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("START") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "round {round}: the child ended before its rotation"
            );
        }
        let which_expected = if last {
            let mut rest = String::new();
            out.read_to_string(&mut rest).unwrap();
            assert!(rest.contains("DONE"), "round {round}: {rest}");
            assert!(child.wait().unwrap().success());
            Some("token")
        } else {
            let delay = Duration::from_millis((round * 7) % 40);
            std::thread::sleep(delay);
            let _ = child.kill();
            child.wait().unwrap();
            None
        };
        let (v, which) = match Vault::open(dir.path(), &root(), None) {
            Ok(v) => (v, "old"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WrongKey, "round {round}: {e}");
                let v = Vault::open(dir.path(), &to, None)
                    .unwrap_or_else(|e2| panic!("round {round}: neither key opens: {e} / {e2}"));
                (v, "token")
            }
        };
        if let Some(expected) = which_expected {
            assert_eq!(which, expected, "round {round}");
        }
        for (r, data) in &records {
            assert_eq!(
                v.get(r, "billing").unwrap().data.as_slice(),
                data.as_bytes()
            );
        }
        v.verify_audit().unwrap();
        eprintln!("round {round}: opens with the {which} key");
    }
}

// ---- a token that goes away ------------------------------------------------

#[test]
fn token_gone_child_entry() {
    let Ok(token_dir) = std::env::var("SV_HSM_GONE_CHILD") else {
        return;
    };
    let hsm = hsm().unwrap();
    let uri = hsm
        .uri("root-removable")
        .replace("token=shredvault", "token=removable");
    let key = RootKey::create_in_token(&uri).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record;
    {
        let v = Vault::open(dir.path(), &root(), Some(example_policy())).unwrap();
        let s = v.create_subject(&[]).unwrap();
        record = v.put(&s, "account", b"stays").unwrap();
        let keystore = std::fs::read(dir.path().join("keys/keystore")).unwrap();
        // The token is taken away (its files gone) before the rotation.
        std::fs::remove_dir_all(&token_dir).unwrap();
        let e = v.rotate_root_key(&key, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Io | ErrorKind::WrongKey),
            "{e}"
        );
        println!("rotation: {e}");
        // Nothing half done: the keystore is as it was, no new one beside it.
        assert_eq!(
            std::fs::read(dir.path().join("keys/keystore")).unwrap(),
            keystore
        );
        assert!(!dir.path().join("keys/keystore.new").exists());
        // The vault goes on.
        assert_eq!(v.get(&record, "billing").unwrap().data.as_slice(), b"stays");
    }
    let v = Vault::open(dir.path(), &root(), None).unwrap();
    assert_eq!(v.get(&record, "billing").unwrap().data.as_slice(), b"stays");
    drop(v);
    // Opening with the key of the token that is gone: a clean error.
    let e = Vault::open(dir.path(), &key, None).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Io | ErrorKind::WrongKey),
        "{e}"
    );
    println!("open: {e}");
    println!("CHILD OK");
}

#[test]
fn a_token_gone_before_a_rotation_leaves_the_vault_as_it_was() {
    let Some(hsm) = hsm() else { return };
    // A second token, in a token directory of its own that only the child
    // process sees: this process's SoftHSM2, shared by the tests running
    // beside this one, never lists a token whose files are then taken away.
    let own = tempfile::tempdir().unwrap();
    let (tokens, conf) = token_dir(own.path());
    let status = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "removable"])
        .args(["--pin", "1234", "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let added: Vec<_> = std::fs::read_dir(&tokens)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hsm::token_gone_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SV_HSM_GONE_CHILD", &added[0])
        .env("SOFTHSM2_CONF", &conf)
        .env("SV_HSM_CHILD_DIR", hsm.pin_file.parent().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("CHILD OK"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- an erasure's receipt, then its completion ------------------------------

#[test]
fn an_erasure_is_complete_once_its_root_key_is_retired() {
    let Some(hsm) = hsm() else { return };
    // The vault starts on `first`, moves to `old` before the erasure and
    // to `new` after it (named with a pin-value, which no log keeps).
    let first = RootKey::create_in_token(&hsm.uri("root-done-first")).unwrap();
    let old = RootKey::create_in_token(&hsm.uri("root-done-old")).unwrap();
    let new_uri = format!(
        "pkcs11:token=shredvault;object=root-done-new?module-path={}&pin-value=1234",
        hsm.module.display()
    );
    let new = RootKey::create_in_token(&new_uri).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = |v: &Vault, receipt: &str| -> serde_json::Value {
        let st = v.erasure_completion(receipt).unwrap();
        // Signed like a receipt, by the vault's key.
        shredvault::verify_receipt(&st.to_string(), Some(&v.receipt_public_key().unwrap()))
            .unwrap();
        st
    };
    let reason = |st: &serde_json::Value| st["reason"].as_str().unwrap().to_string();
    let receipt;
    {
        let v = Vault::open(dir.path(), &first, Some(example_policy())).unwrap();
        v.rotate_root_key(&old, &mut |_, _| {}).unwrap();
        let s = v.create_subject(&[]).unwrap();
        v.put(&s, "job_application", b"to be erased").unwrap();
        receipt = v.erase_subject(&s).unwrap().to_json();
        let st = check(&v, &receipt);
        assert_eq!(st["complete"], false, "{st}");
        assert!(reason(&st).contains("still in force"), "{st}");
        v.rotate_root_key(&new, &mut |_, _| {}).unwrap();
        let st = check(&v, &receipt);
        assert_eq!(st["complete"], false, "{st}");
        assert!(reason(&st).contains("retire-key"), "{st}");
        // The rotations name their keys, never a PIN.
        let named: Vec<String> = v
            .audit_entries(None)
            .unwrap()
            .into_iter()
            .filter(|e| e.op == "rotate_root_key")
            .map(|e| e.detail.unwrap_or_default())
            .collect();
        assert_eq!(named.len(), 2, "{named:?}");
        assert!(
            named[1].contains("to pkcs11:token=shredvault;object=root-done-new?"),
            "{named:?}"
        );
        assert!(named.iter().all(|d| !d.contains("pin-value")), "{named:?}");
        // A receipt changed by one value is not this vault's.
        let forged = receipt.replace(
            "\"subject_key_destroyed\": true",
            "\"subject_key_destroyed\": false",
        );
        assert_ne!(forged, receipt);
        assert_eq!(
            v.erasure_completion(&forged).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
    // The key in force at the erasure retired, but not the one before it:
    // a backup of keys/ from before the first rotation still opens.
    Vault::retire_root_key(&old, &[dir.path()]).unwrap();
    let v = Vault::open(dir.path(), &new, None).unwrap();
    let st = check(&v, &receipt);
    assert_eq!(st["complete"], false, "{st}");
    assert!(reason(&st).contains("object=root-done-first"), "{st}");
    drop(v);
    Vault::retire_root_key(&first, &[dir.path()]).unwrap();
    let v = Vault::open(dir.path(), &new, None).unwrap();
    let st = check(&v, &receipt);
    assert_eq!(st["complete"], true, "{st}");
    let retired = st["retired_root_keys"].to_string();
    assert!(retired.contains("object=root-done-first"), "{st}");
    assert!(retired.contains("object=root-done-old"), "{st}");
    // An erasure under the key now in force is not complete.
    let s = v.create_subject(&[]).unwrap();
    v.put(&s, "account", b"later").unwrap();
    let later = v.erase_subject(&s).unwrap().to_json();
    assert_eq!(check(&v, &later)["complete"], false);
}

#[test]
fn with_a_root_key_in_bytes_completion_is_the_keeper_s_to_prove() {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open(dir.path(), &root(), Some(example_policy())).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let receipt = v.erase_subject(&s).unwrap().to_json();
    v.rotate_root_key(&RootKey::from_bytes(&[3; 32]).unwrap(), &mut |_, _| {})
        .unwrap();
    let st = v.erasure_completion(&receipt).unwrap();
    assert_eq!(st["complete"], false, "{st}");
    assert!(st["reason"].as_str().unwrap().contains("bytes"), "{st}");
}

/// With the root key in a token, a backup's key needs a day key in the
/// token too, and the first expiry run after the backup's window destroys
/// it: the backup then opens for nobody, whatever the clock says. A root
/// key that a backup within its window needs does not retire.
#[test]
fn a_backup_s_day_key_dies_in_the_token_when_its_window_ends() {
    let Some(hsm) = hsm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("v");
    let root_key = RootKey::create_in_token(&hsm.uri("root-backups")).unwrap();
    // The vault's clock starts at the real time (retire-key checks the
    // backups' windows against it).
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (options, now) = common::clocked(start);
    let v = Vault::open_with(&vault, &root_key, Some(example_policy()), options.clone()).unwrap();
    let s = v.create_subject(&[]).unwrap();
    let r = v.put(&s, "account", b"in the backup").unwrap();
    let backup = dir.path().join("b.svb");
    let info = v.backup(&backup).unwrap();
    let label = info.token_day_key.clone().unwrap();
    assert!(label.starts_with("root-backups.backup."), "{label}");
    let date = label.rsplit('.').next().unwrap();
    assert!(
        date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()),
        "{label}"
    );
    assert_eq!(
        info.window_ends_at,
        (start / 86_400 + 1) * 86_400 + 14 * 86_400
    );
    assert_eq!(hsm.objects_labelled(&label), 1);
    // A second backup the same day shares the day key.
    v.backup(dir.path().join("b2.svb")).unwrap();
    assert_eq!(hsm.objects_labelled(&label), 1);
    let ledger = dir.path().join("l.jsonl");
    v.export_ledger(&ledger).unwrap();

    // Within the window it restores, with the token key (bytes will not do).
    let restored = dir.path().join("r");
    let e = Vault::restore(
        &backup,
        dir.path().join("x"),
        &root(),
        std::slice::from_ref(&ledger),
        false,
        options.clone(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
    Vault::restore(
        &backup,
        &restored,
        &root_key,
        std::slice::from_ref(&ledger),
        false,
        options.clone(),
    )
    .unwrap();
    let w = Vault::open_with(&restored, &root_key, None, options.clone()).unwrap();
    assert_eq!(
        w.get(&r, "billing").unwrap().data.as_slice(),
        b"in the backup"
    );
    drop(w);

    // Rotated away from, the old root key still does not retire: the
    // backups need it.
    let next = RootKey::create_in_token(&hsm.uri("root-backups-2")).unwrap();
    v.rotate_root_key(&next, &mut |_, _| {}).unwrap();
    drop(v);
    let e = Vault::retire_root_key(&root_key, &[vault.as_path()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("backup"), "{e}");
    assert_eq!(hsm.objects_labelled("root-backups"), 1);

    // The window ends (the day's end plus 14 days): the expiry run
    // destroys the day key in the token.
    let v = Vault::open_with(&vault, &next, None, options.clone()).unwrap();
    now.store(info.window_ends_at + 1, std::sync::atomic::Ordering::SeqCst);
    let report = v
        .expire(now.load(std::sync::atomic::Ordering::SeqCst))
        .unwrap();
    assert_eq!(report.backup_keys_destroyed, 1, "{report:?}");
    assert_eq!(hsm.objects_labelled(&label), 0);
    drop(v);
    // Now even a clock set back into the window cannot open the backup.
    let (early, _) = common::clocked(start + 60);
    let e = Vault::restore(
        &backup,
        dir.path().join("late"),
        &root_key,
        std::slice::from_ref(&ledger),
        false,
        early,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
    assert!(e.to_string().contains("no longer in the token"), "{e}");
    // The retirement may be forced (the backups become unrestorable).
    Vault::retire_root_key_with(&root_key, &[vault.as_path()], true).unwrap();
    assert_eq!(hsm.objects_labelled("root-backups"), 0);
}
