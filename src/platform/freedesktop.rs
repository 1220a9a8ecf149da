//! The freedesktop room: Linux and the BSDs with an X11/Wayland desktop. XDG autostart, the
//! kernel's and logind's wake signals, the default route as the network's identity, the Secret
//! Service keyring, `xdg-open`, the single-instance socket in `$XDG_RUNTIME_DIR`, and (desktop)
//! freedesktop notifications over D-Bus and the GTK webview.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::unix::{absolute_env_path, home_dir, remove_if_exists};
pub(crate) use super::unix::{hook_std, kill_hook_group, shell_std, system_sign_in};
use crate::event::Command;

/// Start at login: `$XDG_CONFIG_HOME/autostart/mailpulse.desktop` (XDG Autostart; `$HOME/.config`
/// when `XDG_CONFIG_HOME` is unset, empty or relative).
///
/// Known limit: GLib's desktop-entry loader (used by gnome-session, and by other sessions that
/// read autostart entries with GLib) checks that the program exists before it expands `%%`, so
/// it ignores an entry whose program path contains `%`, although the entry is valid (seen with
/// GLib 2.74); [`enable`] logs a warning in that case.
pub mod autostart {
    use super::*;
    use crate::platform::login_entry::{DESKTOP_FILE_NAME, desktop_entry, desktop_entry_enabled};

    /// `$XDG_CONFIG_HOME/autostart/mailpulse.desktop`, falling back to `$HOME/.config`.
    pub fn location() -> Option<PathBuf> {
        let config_home =
            absolute_env_path("XDG_CONFIG_HOME").or_else(|| Some(home_dir()?.join(".config")))?;
        Some(config_home.join("autostart").join(DESKTOP_FILE_NAME))
    }

    fn required_location() -> io::Result<PathBuf> {
        location().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "cannot find the autostart directory: neither XDG_CONFIG_HOME nor HOME is set",
            )
        })
    }

    pub fn enable(exe: &Path) -> io::Result<PathBuf> {
        let contents = desktop_entry(exe)?;
        let path = required_location()?;
        crate::fs::write_atomic(&path, contents.as_bytes())?;
        tracing::info!(path = %path.display(), "autostart enabled");
        if exe.to_string_lossy().contains('%') {
            // The entry is correct (`%%`), but GLib looks for the program before expanding
            // `%%`, so GNOME ignores it.
            tracing::warn!(
                exe = %exe.display(),
                "the program's path contains '%': GNOME (and other desktops that read autostart \
                 entries with GLib) will not start it at login; install mailpulse in a directory \
                 without '%'"
            );
        }
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
        location()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .is_some_and(|text| desktop_entry_enabled(&text))
    }

    /// Whether the entry exists at all, also when the desktop switched it off.
    pub fn exists() -> bool {
        location().is_some_and(|p| p.exists())
    }
}

/// Route/address/link changes from rtnetlink and logind's resumes, each a [`Command::Wake`].
pub(crate) fn spawn_wake_sources(commands: UnboundedSender<Command>) {
    #[cfg(target_os = "linux")]
    {
        tokio::spawn(linux::network_changes(commands.clone()));
        tokio::spawn(linux::logind_resumes(commands));
    }
    #[cfg(not(target_os = "linux"))]
    drop(commands);
}

/// The kernel interfaces only Linux has (the BSDs fall back to the clocks and the timer).
#[cfg(target_os = "linux")]
mod linux {
    use super::*;

    /// Changes arrive in bursts (a link coming up adds addresses and routes): wait this long for
    /// the burst to end, then initiate once.
    const SETTLE: Duration = Duration::from_millis(500);
    use netlink_sys::{AsyncSocket, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};

    const GROUPS: u32 = (libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV6_ROUTE) as u32;

    pub async fn network_changes(commands: UnboundedSender<Command>) {
        let mut socket = match TokioSocket::new(NETLINK_ROUTE) {
            Ok(s) => s,
            Err(e) => {
                tracing::info!("no network change notifications (netlink: {e})");
                return;
            }
        };
        if let Err(e) = socket.socket_mut().bind(&SocketAddr::new(0, GROUPS)) {
            tracing::info!("no network change notifications (netlink bind: {e})");
            return;
        }
        loop {
            if let Err(e) = std::future::poll_fn(|cx| socket.poll_recv_from_full(cx)).await {
                tracing::info!("network change notifications stopped: {e}");
                return;
            }
            // Let the burst settle, swallowing what else arrives meanwhile.
            let settle = tokio::time::sleep(SETTLE);
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    _ = &mut settle => break,
                    r = std::future::poll_fn(|cx| socket.poll_recv_from_full(cx)) => if r.is_err() { break },
                }
            }
            tracing::info!("the network changed: checking every connection now");
            if commands.send(Command::Wake).is_err() {
                return;
            }
        }
    }

    /// logind announces `PrepareForSleep(true)` before a suspend and `PrepareForSleep(false)`
    /// after the resume, on the system bus. Without a system bus or logind (containers, some
    /// minimal systems) the clock-based detector below still notices long suspends.
    pub async fn logind_resumes(commands: UnboundedSender<Command>) {
        use futures::StreamExt;
        let stream = async {
            let conn = zbus::Connection::system().await?;
            let rule = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .sender("org.freedesktop.login1")?
                .path("/org/freedesktop/login1")?
                .interface("org.freedesktop.login1.Manager")?
                .member("PrepareForSleep")?
                .build();
            let stream = zbus::MessageStream::for_match_rule(rule, &conn, None).await?;
            // A match on a bus without logind would never fire: the clocks stay on then.
            let logind = zbus::fdo::DBusProxy::new(&conn)
                .await?
                .name_has_owner("org.freedesktop.login1".try_into()?)
                .await?;
            Ok::<_, zbus::Error>((stream, logind))
        };
        let mut stream = match stream.await {
            Ok((s, logind)) => {
                if logind {
                    crate::platform::RESUME_ANNOUNCED
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                s
            }
            Err(e) => {
                tracing::info!("no resume notifications from logind (system bus: {e})");
                return;
            }
        };
        while let Some(message) = stream.next().await {
            let Ok(message) = message else { continue };
            match message.body().deserialize::<bool>() {
                Ok(true) => tracing::info!("the system is going to sleep"),
                Ok(false) => {
                    tracing::info!("resumed from suspend (logind): checking every connection now");
                    if commands.send(Command::Wake).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!("PrepareForSleep with an unexpected body: {e}"),
            }
        }
        tracing::info!("resume notifications from logind stopped (the system bus went away)");
    }
}

/// Sleep until `deadline` with one wake-up: a timerfd the kernel fires once. tokio's timer
/// wheel wakes the thread at the start of each level's slot on the way down (for a minute's
/// sleep: about 2.6 s, 34 ms and a few ms before it ends, then at the end), which is most of
/// an idle agent's wake-ups. Used for the long idle waits (the keep-alive timer, the suspend
/// check); anything else keeps tokio's timers. Falls back to them where no timerfd can be had.
#[cfg(target_os = "linux")]
pub(crate) async fn sleep_until(deadline: tokio::time::Instant) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if left.is_zero() {
        return;
    }
    // SAFETY: plain system calls; the descriptor is owned by `fd` from here on.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return tokio::time::sleep_until(deadline).await;
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10⁹: fits a c_long on every target.
            tv_nsec: left.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec; no old value is asked for.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
        return tokio::time::sleep_until(deadline).await;
    }
    // SAFETY: the AsyncFd owns `fd` (an OwnedFd): it stays open, and the same descriptor,
    // for as long as the registration lives.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    let Ok(fd) = registered else {
        return tokio::time::sleep_until(deadline).await;
    };
    loop {
        let Ok(mut ready) = fd.readable().await else {
            return tokio::time::sleep_until(deadline).await;
        };
        let mut expirations = [0u8; 8];
        // SAFETY: reads 8 bytes into a buffer of 8.
        let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
        if n == 8 {
            return;
        }
        ready.clear_ready();
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) async fn sleep_until(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await
}

/// Time spent suspended so far (BOOTTIME runs on during suspend, MONOTONIC does not).
#[cfg(target_os = "linux")]
pub(crate) fn suspended_so_far() -> Option<Duration> {
    fn clock(id: libc::clockid_t) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own; the clocks used exist.
        unsafe { libc::clock_gettime(id, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
    Some(clock(libc::CLOCK_BOOTTIME).saturating_sub(clock(libc::CLOCK_MONOTONIC)))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn suspended_so_far() -> Option<Duration> {
    None
}

/// Which network the machine is on, as far as the adaptive keep-alive needs to know: learned
/// idle timeouts are remembered per network.
///
/// The identity is the default route: its gateway address and outgoing interface (Linux:
/// `/proc/net/route`, then `/proc/net/ipv6_route`), e.g. `gw 192.168.1.1 dev wlan0`. That
/// tells apart cable and Wi-Fi, a VPN (its own default route) and most networks (different
/// gateway addresses). The Wi-Fi SSID is not used: reading it needs NetworkManager's D-Bus API
/// or nl80211, which not every system has, and two networks sharing gateway address and
/// interface (two homes, both `192.168.1.1` on `wlan0`) only cost a relearn when the first
/// learned value fails: the main session falls back to the floor at once and learns again.
/// Without a default route the identity is `no default route`; on other platforms `unknown`.
pub(crate) fn network_id() -> String {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    if let Some(id) = from_route_table(&v4) {
        return id;
    }
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    if let Some(id) = from_ipv6_route_table(&v6) {
        return id;
    }
    "no default route".into()
}

/// The default route with the lowest metric from `/proc/net/route`.
pub(crate) fn from_route_table(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & 1 == 0 {
                return None; // not up
            }
            let gw = u32::from_str_radix(f[2], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            // The kernel prints the address in host byte order of a little-endian u32.
            let ip = std::net::Ipv4Addr::from(gw.swap_bytes());
            Some((metric, format!("gw {ip} dev {}", f[0])))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, id)| id)
}

/// The default route with the lowest metric from `/proc/net/ipv6_route`.
pub(crate) fn from_ipv6_route_table(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dest plen src splen nexthop metric refcnt use flags iface
            if f.len() < 10 || f[0] != "0".repeat(32) || f[1] != "00" || f[9] == "lo" {
                return None;
            }
            let hop = u128::from_str_radix(f[4], 16).ok()?;
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            let ip = std::net::Ipv6Addr::from(hop);
            Some((metric, format!("gw {ip} dev {}", f[9])))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, id)| id)
}

/// The Secret Service (gnome-keyring, KeePassXC, KWallet's bridge) over D-Bus.
pub(crate) fn credential_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    zbus_secret_service_keyring_store::Store::new().map(|s| s as Arc<keyring_core::CredentialStore>)
}

/// What the user is told to do when there is no usable keyring.
pub(crate) const KEYRING_UNAVAILABLE_HINT: &str = "no Secret Service on the session bus: \
     install/start gnome-keyring or KeePassXC (with its Secret Service integration enabled), or \
     use password_command";

/// The desktop's proxy for `url`: KDE's settings (`kioslaverc`) in a KDE session, else GNOME's
/// (GNOME, Unity, Cinnamon, Budgie and others keep them in `org.gnome.system.proxy`), read with
/// `gsettings`. "Automatic" settings that name a PAC script run it ([`run_pac`]). Without a
/// desktop session, or without `gsettings`, there is nothing to read: direct.
pub(crate) fn system_proxy(url: &str) -> Result<super::SystemProxy, String> {
    use super::proxy_settings::{Desktop, from_gsettings, from_kioslaverc, kioslaverc_path};
    let desktop = std::env::var("XDG_CURRENT_DESKTOP").unwrap_or_default();
    if desktop.is_empty() {
        return Ok(super::SystemProxy::Direct);
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(super::SystemProxy::Direct);
    };
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let port = parsed.port_or_known_default().unwrap_or(443);
    let answer = if desktop.split(':').any(|d| d.eq_ignore_ascii_case("KDE")) {
        let Some(path) = kioslaverc_path(&|k| std::env::var_os(k)) else {
            return Ok(super::SystemProxy::Direct);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => from_kioslaverc(&text, parsed.scheme(), host, port),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(super::SystemProxy::Direct),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    } else {
        let out = match std::process::Command::new("gsettings")
            .args(["list-recursively", "org.gnome.system.proxy"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => out.stdout,
            // No gsettings, or no GNOME proxy schema: not a GNOME-family desktop.
            _ => return Ok(super::SystemProxy::Direct),
        };
        from_gsettings(&String::from_utf8_lossy(&out), parsed.scheme(), host, port)
    };
    Ok(match answer {
        Desktop::Is(answer) => answer,
        Desktop::Pac { script_url, source } => run_pac(&script_url, &parsed, &source),
    })
}

/// The largest PAC script read (corporate scripts run to tens of KiB).
const PAC_LIMIT: u64 = 1 << 20;
/// How long a fetched PAC script (or the failure to fetch it) is used before it is read again.
const PAC_FRESH: Duration = Duration::from_secs(300);

/// `FindProxyForURL` of the script at `script_url` for `target`, in QuickJS (proxy-watch):
/// heap, stack and time bounded, name lookups allowed (corporate scripts ask `isInNet` of the
/// server's address), `myIpAddress()` the address this machine would use towards the target.
/// A script that cannot be fetched or run leaves the connection direct, with a note (as
/// browsers do).
fn run_pac(script_url: &str, target: &url::Url, source: &str) -> super::SystemProxy {
    use proxy_watch::pac::{PacPolicy, PacScript};
    let shown = super::unix::without_userinfo(script_url);
    let script = match pac_script(script_url) {
        Ok(script) => script,
        Err(e) => {
            return super::SystemProxy::Unsupported(format!(
                "{source} name the PAC script {shown}, which could not be read ({e})"
            ));
        }
    };
    let mut policy = PacPolicy::new()
        .with_dns_resolution(true)
        .with_internal_addresses(true)
        .with_timeout(Some(Duration::from_secs(5)));
    // Finding this machine's address costs a name lookup of the server: only for a script
    // that asks for it.
    if script.contains("myIpAddress")
        && let Some(ip) = local_address_towards(target)
    {
        policy = policy.with_my_ip_address(ip);
    }
    let answer = proxy_watch::pac::evaluate(&PacScript::new(script), target, &policy);
    super::unix::pac_answer(answer, &format!("{source}, PAC script {shown}"))
}

/// The PAC script at `script_url` (`file://`, `http://`, `https://`; fetched straight, never
/// through a proxy), at most [`PAC_LIMIT`] bytes; kept for [`PAC_FRESH`].
fn pac_script(script_url: &str) -> Result<String, String> {
    use std::io::Read;
    type Cached = (String, std::time::Instant, Result<String, String>);
    static CACHE: std::sync::Mutex<Option<Cached>> = std::sync::Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((url, at, script)) = cache.as_ref()
        && url == script_url
        && at.elapsed() < PAC_FRESH
    {
        return script.clone();
    }
    let read = || -> Result<String, String> {
        let url = url::Url::parse(script_url).map_err(|e| format!("not a URL: {e}"))?;
        let mut text = String::new();
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| "not a local file".to_owned())?;
                std::fs::File::open(&path)
                    .and_then(|f| f.take(PAC_LIMIT + 1).read_to_string(&mut text))
                    .map_err(|e| e.to_string())?;
            }
            "http" | "https" => {
                // rustls on ring with the system's roots, as the mail connections of the
                // default build (net::tls::rustls says why ring; platform/ cannot reach it).
                #[allow(deprecated, reason = "ring: no post-quantum key exchange, no cmake")]
                let tls = ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .build();
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .proxy(None)
                    .tls_config(tls)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                text = agent
                    .get(url.as_str())
                    .call()
                    .map_err(|e| e.to_string())?
                    .body_mut()
                    .with_config()
                    .limit(PAC_LIMIT + 1)
                    .read_to_string()
                    .map_err(|e| e.to_string())?;
            }
            other => {
                return Err(format!(
                    "mailpulse reads PAC scripts over http, https or file, not {other}"
                ));
            }
        }
        if text.len() as u64 > PAC_LIMIT {
            return Err("larger than 1 MiB".into());
        }
        Ok(text)
    };
    let script = read();
    *cache = Some((
        script_url.to_owned(),
        std::time::Instant::now(),
        script.clone(),
    ));
    script
}

/// The address this machine sends from towards `target` (a connected UDP socket: no packet
/// leaves), for the script's `myIpAddress()`.
fn local_address_towards(target: &url::Url) -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let host = target.host_str()?.trim_matches(['[', ']']);
    let port = target.port_or_known_default()?;
    let remote = (host, port).to_socket_addrs().ok()?.next()?;
    let bind: std::net::SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(remote).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

/// TCP keep-alive probes after `time` of silence, every `interval`, 3 before the connection is given up.
pub(crate) fn tcp_keepalive(time: Duration, interval: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval)
        .with_retries(3)
}

/// Before the client writes: the answers to what it writes are ACKed together, not one by one.
/// After a quiet minute Linux ACKs each arriving segment at once ("quick ACK" mode, for a
/// sender that may have lost its window); a keep-alive cycle's three answers then cost three
/// lone ACKs on the link. Leaving quick-ACK mode lets one delayed ACK (or the next command)
/// carry them: fewer packets per cycle, nothing later that matters (the answers are read as they
/// come; only the server's knowledge that they arrived waits up to the delayed-ACK timer).
pub(crate) fn ack_answers_together(tcp: &tokio::net::TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(tcp).set_tcp_quickack(false);
    #[cfg(not(target_os = "linux"))]
    let _ = tcp;
}

/// What opens a folder or URL with the desktop's default handler.
pub(crate) const OPENER: &str = "xdg-open";

/// The single instance: a socket in `$XDG_RUNTIME_DIR/mailpulse`, else in the state dir.
#[cfg(feature = "desktop")]
pub mod instance {
    pub use crate::platform::instance::{Claim, Request};

    pub fn claim(
        state_dir: &std::path::Path,
        on_request: impl Fn(Request) + Send + 'static,
    ) -> std::io::Result<Claim> {
        crate::platform::unix::claim_socket_in("XDG_RUNTIME_DIR", state_dir, on_request)
    }

    /// Tell the running instance `request`; whether one answered.
    pub fn tell(state_dir: &std::path::Path, request: Request) -> bool {
        crate::platform::unix::tell_socket_in("XDG_RUNTIME_DIR", state_dir, request)
    }
}

pub(crate) use super::unix::{Signals, replace_process};

/// The desktop shell's OS part: an X11/Wayland display, GDK's environment, the GTK webview,
/// freedesktop notifications over D-Bus (replaced in place by id, clicks reported).
#[cfg(feature = "desktop")]
pub(crate) mod desktop {
    pub(crate) use crate::platform::unix::termination;
    use crate::toasts::ToastKind;

    /// What to do when the settings window's web view cannot be created.
    pub(crate) const WEBVIEW_MISSING_HINT: &str =
        "install WebKitGTK 4.1 (Debian and Ubuntu: libwebkit2gtk-4.1-0), which draws it";

    /// A graphical session to show a tray in: an X11 or Wayland display.
    pub(crate) fn have_display() -> bool {
        std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
            || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty())
    }

    /// The tray draws nothing with OpenGL, but GDK probes GLX for its visuals at start-up,
    /// which loads the GL driver (Mesa's with LLVM: some 45 MB resident, 9 MB private, measured
    /// by `make bench`). The settings window is another process and keeps GL; programs the tray
    /// starts get it back ([`crate::platform::restore_child_env`]).
    ///
    /// Call it from `main` before any other thread exists.
    pub(crate) fn prepare_tray_env() {
        if std::env::var_os("GDK_GL").is_none() {
            // SAFETY: called from main before any thread is started, so nothing reads the
            // environment concurrently.
            unsafe { std::env::set_var("GDK_GL", "disable") };
            crate::platform::GDK_GL_SET_BY_US.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The settings page's webview, in the window's GTK box.
    pub(crate) fn build_webview(
        builder: wry::WebViewBuilder<'_>,
        window: &tao::window::Window,
    ) -> wry::Result<wry::WebView> {
        use tao::platform::unix::WindowExtUnix;
        use wry::WebViewBuilderExtUnix;
        builder.build_gtk(window.default_vbox().expect("tao window has a vbox"))
    }

    /// A shown notification: its id (to replace or close it) and the D-Bus connection that
    /// reports its actions.
    pub(crate) type ToastHandle = notify_rust::NotificationHandle;

    /// The category and desktop-entry hints of the notification spec.
    pub(crate) fn toast_hints(n: &mut notify_rust::Notification, kind: ToastKind) {
        let category = match kind {
            ToastKind::Mail => "email.arrived",
            ToastKind::Error => "network.error",
            ToastKind::Restored => "network.connected",
        };
        n.hint(notify_rust::Hint::Category(category.into()));
        n.hint(notify_rust::Hint::DesktopEntry("mailpulse".into()));
    }

    /// Show `n`, in place of `old` when given. The body is text (a sender's subject, a server's
    /// error message): where the server renders body markup it is escaped, so that nothing in a
    /// mail becomes a link, an image or bold text in a toast. The summary is plain text by the
    /// spec (dunst escapes it itself), so it is sent as it is.
    pub(crate) async fn show_toast(
        n: &mut notify_rust::Notification,
        old: Option<&ToastHandle>,
    ) -> notify_rust::error::Result<ToastHandle> {
        if let Some(old) = old {
            n.id(old.id());
        }
        if renders_body_markup().await {
            n.body = crate::toasts::escape_body_markup(&n.body);
        }
        n.show_async().await
    }

    /// Whether the notification server announces `body-markup` (asked for every toast: the
    /// server may have been replaced since the last one). When it cannot be asked, escape: a
    /// literal `&amp;` is better than a link from a stranger.
    async fn renders_body_markup() -> bool {
        match tokio::task::spawn_blocking(notify_rust::get_capabilities).await {
            Ok(Ok(caps)) => caps.iter().any(|c| c == "body-markup"),
            _ => true,
        }
    }

    /// Wait until the user clicks the toast's default action, then run `clicked`.
    pub(crate) async fn wait_for_click(handle: &ToastHandle, clicked: impl FnOnce()) {
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

    pub(crate) async fn close_toast(handle: &ToastHandle) {
        handle.close_async().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_with_lowest_metric() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(from_route_table(table).unwrap(), "gw 10.0.0.1 dev eth0");
        let only_subnet = "Iface\tDestination\tGateway\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(from_route_table(only_subnet), None);
    }

    #[test]
    fn ipv6_default_route() {
        let table = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(
            from_ipv6_route_table(table).unwrap(),
            "gw fe80::1 dev wlan0"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_suspend_clock_difference_is_read() {
        // No suspend happens during a test: the difference is stable.
        let a = suspended_so_far().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let b = suspended_so_far().unwrap();
        assert!(
            b.saturating_sub(a) < Duration::from_millis(100),
            "{a:?} → {b:?}"
        );
    }

    /// A corporate-style PAC script, run for real in QuickJS: host functions, the default
    /// branch, and the first usable entry of an answer.
    const PAC: &str = r#"
        function FindProxyForURL(url, host) {
            if (isPlainHostName(host) || dnsDomainIs(host, ".lan")) return "DIRECT";
            if (isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";
            if (shExpMatch(host, "*.mail.test")) return "HTTPS secure:443; PROXY web.corp:3128";
            if (host == "legacy.example") return "SOCKS legacy.corp:1080";
            if (url.substring(0, 6) == "https:") return "SOCKS5 sock.corp:1080";
            return "PROXY web.corp:8080; DIRECT";
        }"#;

    fn run(script_url: &str, target: &str) -> crate::platform::SystemProxy {
        run_pac(script_url, &url::Url::parse(target).unwrap(), "the test")
    }

    #[test]
    fn a_pac_script_from_a_file_decides() {
        use crate::platform::SystemProxy;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.pac");
        std::fs::write(&path, PAC).unwrap();
        let url = url::Url::from_file_path(&path).unwrap().to_string();
        let proxy = |u: &str| SystemProxy::Proxy {
            url: u.into(),
            source: format!("the test, PAC script {url}"),
        };
        assert_eq!(run(&url, "https://nas.lan:993/"), SystemProxy::Direct);
        assert_eq!(run(&url, "https://intranet:993/"), SystemProxy::Direct);
        assert_eq!(run(&url, "https://10.1.2.3:993/"), SystemProxy::Direct);
        // The HTTPS proxy is not one mailpulse speaks: the next entry.
        assert_eq!(
            run(&url, "https://imap.mail.test:993/"),
            proxy("http://web.corp:3128")
        );
        assert_eq!(
            run(&url, "https://192.0.2.7:993/"),
            proxy("socks5://sock.corp:1080")
        );
        assert_eq!(
            run(&url, "http://192.0.2.7/ews"),
            proxy("http://web.corp:8080")
        );
        // PAC's plain `SOCKS`: tried as SOCKS5, as on Windows and macOS.
        assert_eq!(
            run(&url, "https://legacy.example:993/"),
            proxy("socks5://legacy.corp:1080")
        );
    }

    #[test]
    fn a_broken_missing_or_endless_pac_script_leaves_the_connection_direct_with_a_note() {
        use crate::platform::SystemProxy;
        let dir = tempfile::tempdir().unwrap();
        let note = |name: &str, body: Option<&str>| {
            let path = dir.path().join(name);
            if let Some(body) = body {
                std::fs::write(&path, body).unwrap();
            }
            let url = url::Url::from_file_path(&path).unwrap().to_string();
            match run(&url, "https://192.0.2.7:993/") {
                SystemProxy::Unsupported(note) => note,
                other => panic!("{name}: {other:?}"),
            }
        };
        assert!(note("missing.pac", None).contains("could not be read"));
        assert!(note("syntax.pac", Some("function FindProxyForURL(u, h) {")).contains("failed"));
        assert!(
            note(
                "endless.pac",
                Some("function FindProxyForURL(u, h) { for (;;) {} }")
            )
            .contains("failed")
        );
        assert!(note("huge.pac", Some(&"/*".repeat(600_000))).contains("larger than 1 MiB"));
    }

    #[test]
    fn a_pac_script_is_fetched_over_http_and_its_credentials_never_named() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "request cut short");
                request.extend_from_slice(&buf[..n]);
            }
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{PAC}",
                PAC.len()
            )
            .unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let url = format!("http://u:secret@127.0.0.1:{port}/wpad.dat");
        match run(&url, "https://192.0.2.7:993/") {
            crate::platform::SystemProxy::Proxy { url, source } => {
                assert_eq!(url, "socks5://sock.corp:1080");
                assert!(!source.contains("secret"), "{source}");
            }
            other => panic!("{other:?}"),
        }
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /wpad.dat HTTP/1.1"), "{request}");
    }

    /// The keep-alive timer wakes the thread once: tokio's wheel would wake it at the start of
    /// each level's slot on the way down (three times or more for a 5 s sleep).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_idle_timer_wakes_the_thread_once() {
        fn switches() -> u64 {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            status
                .lines()
                .filter_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map(|v| v.trim().parse::<u64>().unwrap())
                .sum()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let past = tokio::time::Instant::now();
            sleep_until(past).await;
            let start = std::time::Instant::now();
            let before = switches();
            crate::platform::sleep(Duration::from_secs(5)).await;
            let woken = switches() - before;
            assert!(
                start.elapsed() >= Duration::from_secs(5),
                "{:?}",
                start.elapsed()
            );
            assert!(woken <= 2, "{woken} wake-ups for one timer");
        });
    }
}
