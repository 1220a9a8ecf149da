//! The desktop shell's OS part that macOS and Windows share: the platform's own window system
//! (no display variable to look for, no environment to adjust), the webview in the window, and
//! toasts shown through notify-rust's native backend, which reports neither an id to replace a
//! toast in place nor a click.

use crate::toasts::ToastKind;

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

pub(crate) type ToastHandle = ();

pub(crate) fn toast_hints(_n: &mut notify_rust::Notification, _kind: ToastKind) {}

/// Show `n`; a newer toast of the same slot is shown beside the old one.
pub(crate) async fn show_toast(
    n: &mut notify_rust::Notification,
    _old: Option<&ToastHandle>,
) -> notify_rust::error::Result<ToastHandle> {
    n.show().map(drop)
}

pub(crate) async fn wait_for_click(_handle: &ToastHandle, _clicked: impl FnOnce()) {}

pub(crate) async fn close_toast(_handle: &ToastHandle) {}
