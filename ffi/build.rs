//! Writes `shredvault.pc` (pkg-config) beside the built library, pointing
//! at this checkout's `include/` and the library's directory, so that a C
//! program builds with one line:
//!
//! ```sh
//! cc billing.c $(PKG_CONFIG_PATH=target/release pkg-config --cflags --libs shredvault)
//! ```
//!
//! For an installed copy, edit `libdir` and `includedir` in the file.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out.
    let Some(libdir) = out_dir.ancestors().nth(3).map(Path::to_path_buf) else {
        return;
    };
    let includedir = manifest
        .parent()
        .map(|root| root.join("include"))
        .unwrap_or_else(|| manifest.join("../include"));
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    let pc = format!(
        "libdir={}\nincludedir={}\n\nName: shredvault\nDescription: Embedded privacy vault: personal data erased by destroying keys\nVersion: {version}\nLibs: -L${{libdir}} -Wl,-rpath,${{libdir}} -lshredvault\nLibs.private: -lpthread -ldl -lm\nCflags: -I${{includedir}}\n",
        libdir.display(),
        includedir.display()
    );
    // Best effort: a read-only target directory only loses the convenience.
    let _ = std::fs::write(libdir.join("shredvault.pc"), pc);
}
