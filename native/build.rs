//! Links the system's liblz4 (Debian: `apt-get install liblz4-dev`).
//!
//! The static archive is preferred so the `.node` file does not need liblz4.so.1 at run time (slim
//! runtime images); set `METAGUARD_LZ4_LINK=dylib` to link the shared library instead, and
//! `METAGUARD_LZ4_LIB_DIR` to look for the library somewhere else.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=METAGUARD_LZ4_LINK");
    println!("cargo:rerun-if-env-changed=METAGUARD_LZ4_LIB_DIR");

    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = env::var_os("METAGUARD_LZ4_LIB_DIR") {
        dirs.push(dir.into());
    }
    let target = env::var("TARGET").unwrap_or_default();
    let multiarch = match target.split('-').next().unwrap_or("") {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" | "armv7" => "arm-linux-gnueabihf",
        other => other,
    };
    for dir in [
        format!("/usr/lib/{multiarch}"),
        "/usr/local/lib".into(),
        "/usr/lib".into(),
        "/usr/lib64".into(),
    ] {
        dirs.push(dir.into());
    }

    let want = env::var("METAGUARD_LZ4_LINK").unwrap_or_default();
    let static_dir = dirs.iter().find(|d| d.join("liblz4.a").is_file());
    for dir in &dirs {
        if dir.is_dir() {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
    }
    match (want.as_str(), static_dir) {
        ("dylib", _) | (_, None) => println!("cargo:rustc-link-lib=dylib=lz4"),
        (_, Some(_)) => println!("cargo:rustc-link-lib=static=lz4"),
    }
}
