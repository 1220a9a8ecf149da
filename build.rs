//! One name for the platform condition that would otherwise be spelled out wherever it is
//! needed: `freedesktop` = a Unix with an X11/Wayland desktop (Linux, the BSDs).

fn main() {
    cfg_aliases::cfg_aliases! {
        freedesktop: { all(unix, not(any(target_os = "macos", target_os = "ios", target_os = "android"))) },
    }
}
