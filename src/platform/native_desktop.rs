//! The desktop shell's OS part that macOS and Windows share: the platform's own window system
//! (no display variable to look for) and the webview in the window.

/// A login session of these systems always has a menu bar or a notification area.
pub(crate) fn have_display() -> bool {
    true
}

pub(crate) fn build_webview(
    builder: wry::WebViewBuilder<'_>,
    window: &tao::window::Window,
) -> wry::Result<wry::WebView> {
    builder.build(window)
}
