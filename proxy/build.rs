//! Link flags for the release binaries (also the bench's Pingora floor, which shares this
//! file so that both are linked alike).

use std::path::Path;

fn main() {
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        // Relative relocations packed (DT_RELR, glibc 2.36 and later): the
        // position-independent binary's 1.3 MiB relocation table becomes a few KiB. The
        // loader reads the table at start-up, and what it read stayed resident for the life
        // of the process.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // The functions serving runs, placed together at the start of the code
    // (`benches/code-order.sh` lists them): the kernel maps code in whole folios, so
    // functions scattered over the binary keep three times as much of it mapped as the
    // code itself. Only LLD takes the list; it is Rust's default linker for this target.
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("../proxy/code-order.txt");
    let custom_linker = ["linker=", "linker-flavor", "linker-features"]
        .iter()
        .any(|flag| var("CARGO_ENCODED_RUSTFLAGS").contains(flag))
        || !var("RUSTC_LINKER").is_empty();
    if var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && !custom_linker
        && order.is_file()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names the code no longer has (renamed, or hashed anew by another Rust) are
        // skipped: the list then places fewer functions, and the link still succeeds.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        println!("cargo:rerun-if-changed={}", order.display());
    }
    // Run again only when the script itself or the package manifest changes.
    println!("cargo:rerun-if-changed=Cargo.toml");
}
