//! Turns [`toasts::Action`]s into real desktop notifications (freedesktop notifications over
//! D-Bus on Linux, the platform's own elsewhere) and reports clicks on them.

use std::collections::HashMap;
use std::sync::Arc;

use notify_rust::Notification;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::platform::desktop::{ToastHandle, close_toast, show_toast, toast_hints, wait_for_click};
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
        let mut shown: HashMap<u64, (Arc<ToastHandle>, Option<JoinHandle<()>>)> = HashMap::new();
        let mut warned = false;
        while let Some(action) = rx.recv().await {
            match action {
                Action::Show { slot, toast } | Action::Update { slot, toast } => {
                    let mut n = build(&toast, icon.as_deref());
                    let old = shown.remove(&slot).map(|(old, waiter)| {
                        if let Some(w) = waiter {
                            w.abort();
                        }
                        old
                    });
                    // In place of the old one, where the platform can.
                    match show_toast(&mut n, old.as_deref()).await {
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
                        close_toast(&handle).await;
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
    toast_hints(&mut n, toast.kind);
    if clickable(toast) {
        n.action("default", "Open");
    }
    n
}
