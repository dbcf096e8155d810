//! Two conveniences for C users of a build in this checkout:
//!
//! - the shared library carries a versioned soname, `libshredvault.so.0.1`
//!   for 0.1.x (cargo-c's convention: the major version, or `0.minor`
//!   before 1.0), so programs linked against it keep working across patch
//!   releases and refuse an incompatible one; a `libshredvault.so.0.1`
//!   symlink beside the built library lets them run from the build
//!   directory (`scripts/install-c` installs it properly);
//! - `shredvault.pc` (pkg-config) beside the built library, pointing at
//!   this checkout's `include/` and the library's directory, so a C program
//!   builds with one line:
//!
//! ```sh
//! cc billing.c $(PKG_CONFIG_PATH=target/release pkg-config --cflags --libs shredvault)
//! ```

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    let soname = format!("libshredvault.so.{}", soversion(&version));
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out.
    let Some(libdir) = out_dir.ancestors().nth(3).map(Path::to_path_buf) else {
        return;
    };
    // Best effort from here: a read-only target directory only loses the
    // conveniences.
    let link = libdir.join(&soname);
    if std::fs::symlink_metadata(&link).is_err() {
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink("libshredvault.so", &link);
    }
    let includedir = manifest
        .parent()
        .map(|root| root.join("include"))
        .unwrap_or_else(|| manifest.join("../include"));
    let pc = format!(
        "libdir={}\nincludedir={}\n\nName: shredvault\nDescription: Privacy vault: personal data erased by destroying keys\nVersion: {version}\nLibs: -L${{libdir}} -Wl,-rpath,${{libdir}} -lshredvault\nLibs.private: -lpthread -ldl -lm\nCflags: -I${{includedir}}\n",
        libdir.display(),
        includedir.display()
    );
    let _ = std::fs::write(libdir.join("shredvault.pc"), pc);
}

/// `0.minor` before 1.0, the major version after.
fn soversion(version: &str) -> String {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or("0");
    match major {
        "0" => format!("0.{}", parts.next().unwrap_or("0")),
        _ => major.to_string(),
    }
}
