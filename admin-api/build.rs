//! The web UI's static export is embedded in the binary: rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../web-admin/out");
}
