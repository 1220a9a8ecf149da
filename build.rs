//! One name for the platform condition that would otherwise be spelled out wherever it is
//! needed: `freedesktop` = a Unix with an X11/Wayland desktop (Linux, the BSDs); `platform_tls` =
//! TLS by native-tls rather than rustls (`protocol::tls`).

fn main() {
    // Nothing but this file decides the aliases: do not rerun (and rebuild the crate) on every
    // change elsewhere in the package.
    println!("cargo:rerun-if-changed=build.rs");
    cfg_aliases::cfg_aliases! {
        freedesktop: { all(unix, not(any(target_os = "macos", target_os = "ios", target_os = "android"))) },
        // TLS through native-tls (the platform's own; OpenSSL on Linux with the `native-tls`
        // feature) rather than rustls. Cargo.toml's target tables spell the same condition.
        platform_tls: { any(windows, target_os = "macos", target_os = "ios", feature = "native-tls") },
    }
}
