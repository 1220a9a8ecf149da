//! Turns [`toasts::Action`]s into real desktop notifications (freedesktop notifications over
//! D-Bus on Linux, the platform's own elsewhere) and reports clicks on them.

use std::collections::HashMap;
use std::sync::Arc;

use notify_rust::{Notification, NotificationHandle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::toasts::{Action, Toast, ToastKind};

/// Sends toast actions to the notifier task (cheap to clone).
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Action>,
}

impl Notifier {
    pub fn send(&self, actions: Vec<Action>) {
        for a in actions {
            let _ = self.tx.send(a);
        }
    }
}

/// Start the notifier on the tokio runtime. `on_click(account)` runs when the user clicks a
/// mail toast (the "default" action).
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    icon: Option<String>,
    on_click: impl Fn(Option<String>) + Send + Sync + 'static,
) -> Notifier {
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    let on_click = Arc::new(on_click);
    runtime.spawn(async move {
        let mut shown: HashMap<u64, (Arc<NotificationHandle>, Option<JoinHandle<()>>)> =
            HashMap::new();
        let mut warned = false;
        while let Some(action) = rx.recv().await {
            match action {
                Action::Show { slot, toast } | Action::Update { slot, toast } => {
                    let mut n = build(&toast, icon.as_deref());
                    if let Some((old, waiter)) = shown.remove(&slot) {
                        if let Some(w) = waiter {
                            w.abort();
                        }
                        n.id(old.id()); // replace it in place
                    }
                    match show(&n).await {
                        Ok(handle) => {
                            let handle = Arc::new(handle);
                            let waiter = clickable(&toast).then(|| {
                                let h = handle.clone();
                                let on_click = on_click.clone();
                                let account = toast.account.clone();
                                tokio::spawn(async move {
                                    wait_for_click(&h, move || on_click(account)).await
                                })
                            });
                            shown.insert(slot, (handle, waiter));
                        }
                        Err(e) if !warned => {
                            warned = true;
                            tracing::warn!(
                                "cannot show notifications (is a notification daemon running?): {e}"
                            );
                        }
                        Err(e) => tracing::debug!("notification failed: {e}"),
                    }
                }
                Action::Close { slot } => {
                    if let Some((handle, waiter)) = shown.remove(&slot) {
                        if let Some(w) = waiter {
                            w.abort();
                        }
                        close(&handle).await;
                    }
                }
            }
            // Forget toasts the daemon already closed (their waiter ended).
            shown.retain(|_, (_, w)| w.as_ref().is_none_or(|w| !w.is_finished()));
        }
    });
    Notifier { tx }
}

fn clickable(toast: &Toast) -> bool {
    matches!(toast.kind, ToastKind::Mail | ToastKind::Error)
}

fn build(toast: &Toast, icon: Option<&str>) -> Notification {
    let mut n = Notification::new();
    n.appname("mailpulse")
        .summary(&toast.summary)
        .body(&toast.body);
    if let Some(icon) = icon {
        n.icon(icon);
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let category = match toast.kind {
            ToastKind::Mail => "email.arrived",
            ToastKind::Error => "network.error",
            ToastKind::Restored => "network.connected",
        };
        n.hint(notify_rust::Hint::Category(category.into()));
        n.hint(notify_rust::Hint::DesktopEntry("mailpulse".into()));
    }
    if clickable(toast) {
        n.action("default", "Open");
    }
    n
}

#[cfg(all(unix, not(target_os = "macos")))]
async fn show(n: &Notification) -> notify_rust::error::Result<NotificationHandle> {
    n.show_async().await
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn show(n: &Notification) -> notify_rust::error::Result<NotificationHandle> {
    n.show()
}

#[cfg(all(unix, not(target_os = "macos")))]
async fn wait_for_click(handle: &NotificationHandle, clicked: impl FnOnce()) {
    let mut was_default = false;
    handle
        .wait_for_action_async(|r| {
            was_default = matches!(r, notify_rust::NotificationResponse::Default)
        })
        .await;
    if was_default {
        clicked();
    }
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn wait_for_click(_handle: &NotificationHandle, _clicked: impl FnOnce()) {}

#[cfg(all(unix, not(target_os = "macos")))]
async fn close(handle: &NotificationHandle) {
    handle.close_async().await;
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn close(_handle: &NotificationHandle) {}
