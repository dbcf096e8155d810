//! `include/shredvault.h` is generated from `ffi/src/lib.rs` by the pinned
//! cbindgen and committed. This test regenerates it and fails on any
//! difference; `SV_UPDATE_HEADER=1` rewrites the committed file instead.

use std::path::Path;

fn generate() -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml reads");
    let version = env!("CARGO_PKG_VERSION");
    let parts: Vec<&str> = version.split('.').collect();
    config.after_includes = Some(format!(
        "\n#define SHREDVAULT_VERSION \"{version}\"\n#define SHREDVAULT_VERSION_MAJOR {}\n#define SHREDVAULT_VERSION_MINOR {}\n#define SHREDVAULT_VERSION_PATCH {}",
        parts[0], parts[1], parts[2]
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn the_committed_header_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/shredvault.h");
    let fresh = generate();
    if std::env::var_os("SV_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/shredvault.h is stale: run `SV_UPDATE_HEADER=1 cargo test -p shredvault-ffi --test header` and commit it"
    );
}

#[test]
fn the_version_macros_match_cargo_toml() {
    let fresh = generate();
    let version = env!("CARGO_PKG_VERSION");
    assert!(fresh.contains(&format!("#define SHREDVAULT_VERSION \"{version}\"")));
}
