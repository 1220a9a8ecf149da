//! The macOS room: a launchd user agent, IOKit wake and dynamic-store network notifications (the
//! mach clocks as the fallback for resume), the Keychain, `open`, the
//! single-instance socket in the per-user temporary folder, and (desktop) user notifications and
//! WKWebView. Type-checked on every CI run (`make cross-check`), not run here.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::unix::{home_dir, remove_if_exists};
pub(crate) use super::unix::{hook_std, kill_hook_group, shell_std, system_sign_in};
use crate::event::Command;

/// Start at login: `~/Library/LaunchAgents/org.mailpulse.mailpulse.plist` (a launchd user agent,
/// `RunAtLoad`).
pub mod autostart {
    use super::*;
    use crate::platform::login_entry::{LAUNCH_AGENT_LABEL, launch_agent_plist};

    /// `~/Library/LaunchAgents/org.mailpulse.mailpulse.plist`.
    pub fn location() -> Option<PathBuf> {
        Some(
            home_dir()?
                .join("Library")
                .join("LaunchAgents")
                .join(format!("{LAUNCH_AGENT_LABEL}.plist")),
        )
    }

    fn required_location() -> io::Result<PathBuf> {
        location().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "cannot find the LaunchAgents directory: HOME is not set",
            )
        })
    }

    /// Writes the agent; launchd loads it at the next login (nothing is started now).
    pub fn enable(exe: &Path) -> io::Result<PathBuf> {
        let contents = launch_agent_plist(exe)?;
        let path = required_location()?;
        crate::fs::write_atomic(&path, contents.as_bytes())?;
        tracing::info!(path = %path.display(), "autostart enabled");
        Ok(path)
    }

    pub fn disable() -> io::Result<()> {
        let Some(path) = location() else {
            return Ok(());
        };
        remove_if_exists(&path)?;
        tracing::info!(path = %path.display(), "autostart disabled");
        Ok(())
    }

    pub fn is_enabled() -> bool {
        location().is_some_and(|path| path.is_file())
    }

    /// There is no "switched off" entry on macOS: it exists or not.
    pub fn exists() -> bool {
        is_enabled()
    }
}

/// Network changes from the System Configuration dynamic store (the primary IPv4/IPv6 service
/// and router: `State:/Network/Global/IPv4|IPv6`) and the system's wake from IOKit's root power
/// domain (`IORegisterForSystemPower`), both on one thread of their own that runs a CFRunLoop; a
/// burst is settled for 0.5 s and becomes one [`Command::Wake`]. The clock pair below stays as
/// the fallback for resume.
pub(crate) fn spawn_wake_sources(commands: UnboundedSender<Command>) {
    let (changed_tx, changed) = tokio::sync::mpsc::unbounded_channel::<super::WakeReason>();
    let watcher = std::thread::Builder::new()
        .name("mailpulse-wake".into())
        .spawn(move || {
            let power = power::register(changed_tx.clone());
            if power {
                super::RESUME_ANNOUNCED.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            // Runs the loop as long as the dynamic store can be watched…
            network_changes(changed_tx);
            // …and where it cannot, the loop runs for the power notifications alone.
            if power {
                core_foundation::runloop::CFRunLoop::run_current();
            }
        });
    if let Err(e) = watcher {
        tracing::info!("no network change or wake notifications: {e}");
        return;
    }
    tokio::spawn(super::forward_settled(changed, commands));
}

/// IOKit's system power notifications on the current thread's run loop: "has powered on" is a
/// wake. Sleep requests must be answered (`IOAllowPowerChange`), or the system waits 30 s for us.
mod power {
    use super::*;
    use core_foundation::base::TCFType;
    use core_foundation::runloop::{CFRunLoop, CFRunLoopSource, kCFRunLoopCommonModes};
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicU32, Ordering};

    type IoConnect = u32;
    type IoService = u32;
    type NotificationPort = *mut c_void;

    const SYSTEM_WILL_SLEEP: u32 = 0xe000_0280;
    const CAN_SYSTEM_SLEEP: u32 = 0xe000_0270;
    const SYSTEM_HAS_POWERED_ON: u32 = 0xe000_0300;

    #[link(name = "IOKit", kind = "framework")]
    unsafe extern "C" {
        fn IORegisterForSystemPower(
            refcon: *mut c_void,
            port: *mut NotificationPort,
            callback: extern "C" fn(*mut c_void, IoService, u32, *mut c_void),
            notifier: *mut u32,
        ) -> IoConnect;
        fn IONotificationPortGetRunLoopSource(
            port: NotificationPort,
        ) -> core_foundation::runloop::CFRunLoopSourceRef;
        fn IOAllowPowerChange(kernel_port: IoConnect, notification_id: isize) -> i32;
    }

    /// The root power domain's connection, for the answers to sleep requests.
    static ROOT: AtomicU32 = AtomicU32::new(0);

    extern "C" fn on_power(refcon: *mut c_void, _service: IoService, kind: u32, arg: *mut c_void) {
        match kind {
            SYSTEM_WILL_SLEEP | CAN_SYSTEM_SLEEP => {
                // SAFETY: answers the request this callback was given.
                unsafe { IOAllowPowerChange(ROOT.load(Ordering::Relaxed), arg as isize) };
            }
            SYSTEM_HAS_POWERED_ON => {
                // SAFETY: the refcon is the sender leaked in `register`.
                let tx = unsafe { &*refcon.cast::<UnboundedSender<super::super::WakeReason>>() };
                let _ = tx.send(super::super::WakeReason::Resume);
            }
            _ => {}
        }
    }

    /// Register on this thread's run loop; the registration lives as long as the process.
    pub(super) fn register(changed: UnboundedSender<super::super::WakeReason>) -> bool {
        let refcon = Box::into_raw(Box::new(changed)).cast::<c_void>();
        let mut port: NotificationPort = std::ptr::null_mut();
        let mut notifier = 0u32;
        // SAFETY: the out-pointers are ours; the refcon is leaked on purpose ('static).
        let root = unsafe { IORegisterForSystemPower(refcon, &mut port, on_power, &mut notifier) };
        if root == 0 || port.is_null() {
            tracing::info!("no wake notifications (IORegisterForSystemPower failed)");
            return false;
        }
        ROOT.store(root, Ordering::Relaxed);
        // SAFETY: the port's source is owned by the port (get rule): retained for our wrapper.
        let source = unsafe {
            CFRunLoopSource::wrap_under_get_rule(IONotificationPortGetRunLoopSource(port))
        };
        // SAFETY: kCFRunLoopCommonModes is an immutable constant of CoreFoundation.
        CFRunLoop::get_current().add_source(&source, unsafe { kCFRunLoopCommonModes });
        true
    }
}

/// The dynamic store's run loop: returns only if the store cannot be watched.
fn network_changes(changed: UnboundedSender<super::WakeReason>) {
    use core_foundation::array::CFArray;
    use core_foundation::runloop::{CFRunLoop, kCFRunLoopCommonModes};
    use core_foundation::string::CFString;
    use system_configuration::dynamic_store::{
        SCDynamicStore, SCDynamicStoreBuilder, SCDynamicStoreCallBackContext,
    };

    fn callout(
        _store: SCDynamicStore,
        _keys: CFArray<CFString>,
        changed: &mut UnboundedSender<super::WakeReason>,
    ) {
        let _ = changed.send(super::WakeReason::Network);
    }
    let Some(store) = SCDynamicStoreBuilder::new("mailpulse")
        .callback_context(SCDynamicStoreCallBackContext {
            callout,
            info: changed,
        })
        .build()
    else {
        tracing::info!("no network change notifications (the dynamic store cannot be opened)");
        return;
    };
    let keys = CFArray::from_CFTypes(&[
        CFString::from("State:/Network/Global/IPv4"),
        CFString::from("State:/Network/Global/IPv6"),
    ]);
    let patterns: CFArray<CFString> = CFArray::from_CFTypes(&[]);
    if !store.set_notification_keys(&keys, &patterns) {
        tracing::info!("no network change notifications (the dynamic store refused the keys)");
        return;
    }
    let Some(source) = store.create_run_loop_source() else {
        tracing::info!("no network change notifications (no run loop source)");
        return;
    };
    // SAFETY: kCFRunLoopCommonModes is an immutable constant of CoreFoundation.
    CFRunLoop::get_current().add_source(&source, unsafe { kCFRunLoopCommonModes });
    CFRunLoop::run_current();
}

/// macOS: `mach_continuous_time` runs on during sleep, `mach_absolute_time` does not.
pub(crate) fn suspended_so_far() -> Option<Duration> {
    unsafe extern "C" {
        fn mach_continuous_time() -> u64;
        fn mach_absolute_time() -> u64;
        fn mach_timebase_info(info: *mut [u32; 2]) -> i32;
    }
    let mut base = [0u32; 2];
    // SAFETY: plain reads of the kernel's clocks into values we own.
    let (cont, abs) = unsafe {
        if mach_timebase_info(&mut base) != 0 || base[1] == 0 {
            return None;
        }
        (mach_continuous_time(), mach_absolute_time())
    };
    let ticks = cont.saturating_sub(abs) as u128;
    Some(Duration::from_nanos(
        (ticks * base[0] as u128 / base[1] as u128) as u64,
    ))
}

/// Learned intervals are remembered per network; macOS's network identity is not read yet.
pub(crate) fn network_id() -> String {
    "unknown".into()
}

/// The login Keychain.
pub(crate) fn credential_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    apple_native_keyring_store::keychain::Store::new()
        .map(|s| s as Arc<keyring_core::CredentialStore>)
}

/// What the user is told to do when there is no usable keyring.
pub(crate) const KEYRING_UNAVAILABLE_HINT: &str = "the macOS Keychain cannot be opened: check \
     that you are logged in to a graphical session and that the login keychain exists (Keychain \
     Access), or use password_command";

/// The proxy settings of the active network service (System Settings › Network › Details ›
/// Proxies), from the System Configuration dynamic store: HTTPS proxy, else SOCKS, with the
/// bypass list; a PAC script named there is run by CFNetwork.
pub(crate) fn system_proxy(url: &str) -> Result<super::SystemProxy, String> {
    use core_foundation::array::CFArray;
    use core_foundation::base::{CFType, TCFType};
    use core_foundation::number::CFNumber;
    use core_foundation::string::CFString;
    use system_configuration::dynamic_store::SCDynamicStoreBuilder;

    use super::SystemProxy;
    use super::proxy_settings::bypass_patterns;

    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let Some(store) = SCDynamicStoreBuilder::new("mailpulse").build() else {
        return Ok(SystemProxy::Direct);
    };
    let Some(dict) = store.get_proxies() else {
        return Ok(SystemProxy::Direct);
    };
    let value = |k: &'static str| {
        dict.find(CFString::from_static_string(k))
            .map(|v| v.clone())
    };
    let number = |k: &'static str| {
        value(k)
            .and_then(|v: CFType| v.downcast::<CFNumber>())
            .and_then(|n| n.to_i64())
    };
    let text = |k: &'static str| {
        value(k)
            .and_then(|v: CFType| v.downcast::<CFString>())
            .map(|s| s.to_string())
    };
    if number("ProxyAutoConfigEnable") == Some(1) {
        let Some(script_url) = text("ProxyAutoConfigURLString") else {
            return Ok(SystemProxy::Unsupported(
                "the network's proxy settings turn on a PAC script but name none".into(),
            ));
        };
        let shown = super::unix::without_userinfo(&script_url);
        let source = format!("the macOS network proxy settings, PAC script {shown}");
        // CFNetwork fetches and runs the script, as Safari does.
        let answer = match url::Url::parse(&script_url) {
            Ok(pac) => proxy_watch::pac::CfNetworkPacResolver::new().resolve(&parsed, &pac),
            Err(e) => {
                return Ok(SystemProxy::Unsupported(format!(
                    "{source}: not a URL ({e})"
                )));
            }
        };
        return Ok(super::unix::pac_answer(answer, &source));
    }
    let exceptions: Vec<String> = value("ExceptionsList")
        .and_then(|v| v.downcast::<CFArray>())
        .map(|a| {
            a.iter()
                .filter_map(|item| {
                    // SAFETY: the array's items are CF objects owned by the array.
                    let item = unsafe { CFType::wrap_under_get_rule(*item as _) };
                    item.downcast::<CFString>().map(|s| s.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    if exceptions.iter().any(|p| bypass_patterns(p, &host))
        || (number("ExcludeSimpleHostnames") == Some(1) && !host.contains('.'))
    {
        return Ok(SystemProxy::Direct);
    }
    let source = || "the macOS network proxy settings".to_owned();
    let (scheme, enable, server, port) = if parsed.scheme() == "http" {
        ("http", "HTTPEnable", "HTTPProxy", "HTTPPort")
    } else {
        ("http", "HTTPSEnable", "HTTPSProxy", "HTTPSPort")
    };
    for (scheme, enable, server, port) in [
        (scheme, enable, server, port),
        ("socks5", "SOCKSEnable", "SOCKSProxy", "SOCKSPort"),
    ] {
        if number(enable) == Some(1)
            && let (Some(h), Some(p)) = (text(server), number(port))
        {
            return Ok(SystemProxy::Proxy {
                url: format!("{scheme}://{h}:{p}"),
                source: source(),
            });
        }
    }
    Ok(SystemProxy::Direct)
}

/// Before the client writes ([`crate::platform`]'s freedesktop room explains): macOS has no quick-ACK switch (its delayed ACKs are the default).
pub(crate) fn ack_answers_together(_tcp: &tokio::net::TcpStream) {}

/// Sleep until `deadline` (the freedesktop room explains why the long idle waits have their own
/// timer): tokio's, here.
pub(crate) async fn sleep_until(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await
}

/// TCP keep-alive probes after `time` of silence, every `interval`, 3 before the connection is given up.
pub(crate) fn tcp_keepalive(time: Duration, interval: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval)
        .with_retries(3)
}

/// What opens a folder or URL with the default application.
pub(crate) const OPENER: &str = "open";

/// The single instance: a socket in the per-user temporary folder (`$TMPDIR`), else in the
/// state dir.
#[cfg(feature = "desktop")]
pub mod instance {
    pub use crate::platform::instance::{Claim, Request};

    pub fn claim(
        state_dir: &std::path::Path,
        on_request: impl Fn(Request) + Send + 'static,
    ) -> std::io::Result<Claim> {
        crate::platform::unix::claim_socket_in("TMPDIR", state_dir, on_request)
    }

    /// Tell the running instance `request`; whether one answered.
    pub fn tell(state_dir: &std::path::Path, request: Request) -> bool {
        crate::platform::unix::tell_socket_in("TMPDIR", state_dir, request)
    }
}

pub(crate) use super::unix::{Signals, replace_process};

/// The desktop shell's OS part: the tray owns the main thread (tao), WKWebView, user
/// notifications (shown, not replaced or clicked: notify-rust's macOS backend reports neither an
/// id to replace a toast in place nor a click).
#[cfg(feature = "desktop")]
pub(crate) mod desktop {
    pub(crate) use crate::platform::native_desktop::*;

    /// What to do when the settings window's web view cannot be created.
    pub(crate) const WEBVIEW_MISSING_HINT: &str = "WKWebView comes with macOS; update macOS";
    pub(crate) use crate::platform::unix::termination;
    use crate::toasts::ToastKind;

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

    /// Toasts are sent in the name of mailpulse's bundle (`mailpulse.app`), not of the Finder,
    /// which mac-notification-sys uses when no application is named.
    pub(crate) fn prepare_tray_env() {
        if let Err(e) = notify_rust::set_application(crate::platform::BUNDLE_ID) {
            tracing::debug!("notifications stay in the Finder's name: {e}");
        }
    }
}
