#![allow(dead_code)]
//! What the command-line tests share: reading a command's outcome the way
//! an operator does (ids on stdout, one-line reasons on stderr), and
//! copying a vault directory (a backup, as an operator would take one).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The command succeeded: its stdout, trimmed.
pub fn ok(out: &Output) -> String {
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

/// The command failed with one line on stderr naming `kind`: that line.
pub fn fails(out: &Output, kind: &str) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(kind), "{kind} in {err}");
    err
}

/// A copy of the directory `from` at `to`, files and subdirectories.
pub fn copy_dir(from: &Path, to: &Path) {
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

#[allow(dead_code)]
const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
];

/// A SoftHSM2 token of the test's own (label `ops`, PIN 1234), in a
/// temporary directory, and commands run against it.
#[allow(dead_code)]
pub struct Token {
    dir: tempfile::TempDir,
    module: PathBuf,
}

#[allow(dead_code)]
impl Token {
    pub fn new() -> Option<Token> {
        let module = MODULES.iter().map(PathBuf::from).find(|p| p.exists());
        let Some(module) = module else {
            assert!(
                std::env::var_os("SV_REQUIRE_SOFTHSM").is_none(),
                "SV_REQUIRE_SOFTHSM is set but SoftHSM2 is not installed"
            );
            eprintln!("SoftHSM2 is not installed: not run");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("pin"), "1234\n").unwrap();
        let status = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "ops"])
            .args(["--pin", "1234", "--so-pin", "5678"])
            .env("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        Some(Token { dir, module })
    }

    /// The SoftHSM2 configuration naming the token's directory.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token=ops;object={object}?module-path={}&pin-source=file:{}/pin",
            self.module.display(),
            self.dir.path().display()
        )
    }

    pub fn sv(&self, args: &[&str], env_key: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shredvault"));
        cmd.args(args)
            .env("SOFTHSM2_CONF", self.dir.path().join("softhsm2.conf"))
            .env_remove("SHREDVAULT_ROOT_KEY")
            .stdin(Stdio::null());
        if let Some(k) = env_key {
            cmd.env("SHREDVAULT_ROOT_KEY", k);
        }
        cmd.output().unwrap()
    }
}
