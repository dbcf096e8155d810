//! What the command-line tests share: reading a command's outcome the way
//! an operator does (ids on stdout, one-line reasons on stderr), and
//! copying a vault directory (a backup, as an operator would take one).

use std::path::Path;
use std::process::Output;

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
