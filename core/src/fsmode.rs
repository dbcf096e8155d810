//! File modes: a vault's directories are made 0700 and its files 0600, so
//! no other local user reads `data/`, the journal or the keystore, or takes
//! the vault's lock; and an open reports looser modes it finds (a vault
//! made before, or a directory an operator widened).

use std::fs::OpenOptions;
use std::path::Path;

use crate::error::{Error, Result};

/// Creates `dir` (and missing parents) with mode 0700. An existing
/// directory keeps its mode (see [`looser_than_private`]).
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// [`create_private_dir`], and then the directory entries it made are made
/// durable: the parent of each directory it created is fsynced. (A vault
/// made in a new directory must not vanish with a power cut after its
/// creation was acknowledged: found by the power-loss harness, which cut
/// power just after a vault's creation and lost the directory's entry.)
pub(crate) fn create_private_dir_durably(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    create_private_dir(dir)?;
    for d in missing.iter().rev() {
        sync_parent(d)?;
    }
    Ok(())
}

/// Fsyncs the directory holding `path` (a file created or renamed there).
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    crate::store::sled_store::sync_dir(parent)
}

/// Options for a vault file: created 0600, never through a symbolic link.
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Creates (or truncates) a vault file, 0600, not through a link.
pub(crate) fn create_private_file(path: &Path) -> Result<std::fs::File> {
    private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Sets the files sled made in `dir` (and its `blobs/`) to 0600, and the
/// directories to 0700: sled creates them with the process's umask.
pub(crate) fn restrict_tree(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        set_mode(dir, 0o700)?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if meta.is_dir() {
                restrict_tree(&path)?;
            } else if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                set_mode(&path, 0o600)?;
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))
}

/// A warning if `path` is open to other users than its owner (group or
/// other bits set), naming its mode and the fix.
pub(crate) fn looser_than_private(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} has mode {mode:04o}: other local users may read or lock the vault (chmod -R go-rwx {})",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    None
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::{
        create_private_dir, create_private_file, looser_than_private, private_file, restrict_tree,
    };

    #[test]
    fn private_dirs_and_files_and_links_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("a/b");
        create_private_dir(&vault).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&vault), 0o700);
        assert!(looser_than_private(&vault).is_none());
        let f = vault.join("f");
        create_private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        std::os::unix::fs::symlink(&f, vault.join("link")).unwrap();
        assert!(private_file().read(true).open(vault.join("link")).is_err());
        std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(looser_than_private(&vault).unwrap().contains("0755"));
        std::fs::write(vault.join("g"), b"x").unwrap();
        std::fs::set_permissions(vault.join("g"), std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict_tree(&vault).unwrap();
        assert_eq!(mode(&vault), 0o700);
        assert_eq!(mode(&vault.join("g")), 0o600);
    }
}
