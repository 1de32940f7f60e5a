//! Link flags for the release binaries (also the bench's Pingora floor, which shares this
//! file so that both are linked alike).

fn main() {
    // Relative relocations packed (DT_RELR, glibc 2.36 and later): the position-independent
    // binary's 1.3 MiB relocation table becomes a few KiB. The loader reads the table at
    // start-up, and what it read stayed resident for the life of the process.
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // Run again only when the script itself or the package manifest changes.
    println!("cargo:rerun-if-changed=Cargo.toml");
}
