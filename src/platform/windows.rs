//! The Windows room: the `Run` key, IP helper and power notifications (with the interrupt-time
//! clocks as the fallback for resume), the Credential Manager, `cmd /D /S /C` for
//! `password_command` and no shell for hooks, `explorer`, the single instance (a named mutex and
//! a named pipe only this user can open), and (desktop) Windows toasts and WebView2. Type-checked on every CI run (`make cross-check`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::Signal;
use crate::event::Command;

/// Start at login: value `mailpulse` of `HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run`.
pub mod autostart {
    use super::*;
    use crate::platform::login_entry::{RUN_KEY, RUN_VALUE_NAME, run_command_line};
    use winreg::RegKey;
    use winreg::enums::{HKEY_CURRENT_USER, KEY_QUERY_VALUE, KEY_SET_VALUE};

    /// `HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run\mailpulse` (a registry
    /// path, not a file).
    pub fn location() -> Option<PathBuf> {
        Some(PathBuf::from(format!(
            r"HKEY_CURRENT_USER\{RUN_KEY}\{RUN_VALUE_NAME}"
        )))
    }

    pub fn enable(exe: &Path) -> io::Result<PathBuf> {
        let line = run_command_line(exe)?;
        let hkcu = RegKey::predef(HKEY_CURRENT_USER);
        let (run, _) = hkcu.create_subkey_with_flags(RUN_KEY, KEY_SET_VALUE)?;
        run.set_value(RUN_VALUE_NAME, &line)?;
        let path = location().unwrap_or_default();
        tracing::info!(path = %path.display(), "autostart enabled");
        Ok(path)
    }

    pub fn disable() -> io::Result<()> {
        let hkcu = RegKey::predef(HKEY_CURRENT_USER);
        let run = match hkcu.open_subkey_with_flags(RUN_KEY, KEY_SET_VALUE) {
            Ok(run) => run,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match run.delete_value(RUN_VALUE_NAME) {
            Ok(()) => {
                tracing::info!("autostart disabled");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn is_enabled() -> bool {
        RegKey::predef(HKEY_CURRENT_USER)
            .open_subkey_with_flags(RUN_KEY, KEY_QUERY_VALUE)
            .and_then(|run| run.get_raw_value(RUN_VALUE_NAME))
            .is_ok()
    }

    /// There is no "switched off" entry here: it exists or not.
    pub fn exists() -> bool {
        is_enabled()
    }
}

/// Network changes (a unicast address or a route added, changed or removed) from the IP helper,
/// and resume from the power manager: both call back on a system thread, without a window or a
/// message loop, and go through the same settling as on macOS and Linux. The clock pair below
/// stays as the fallback where a registration fails.
pub(crate) fn spawn_wake_sources(commands: UnboundedSender<Command>) {
    use windows_sys::Win32::Foundation::{HANDLE, NO_ERROR};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        NotifyRouteChange2, NotifyUnicastIpAddressChange,
    };
    use windows_sys::Win32::Networking::WinSock::AF_UNSPEC;
    use windows_sys::Win32::System::Power::{
        DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS, PowerRegisterSuspendResumeNotification,
    };
    use windows_sys::Win32::UI::WindowsAndMessaging::DEVICE_NOTIFY_CALLBACK;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<super::WakeReason>();
    // The callbacks' context lives as long as the process (the registrations are never
    // cancelled), so it is leaked on purpose.
    let context: &'static UnboundedSender<super::WakeReason> = Box::leak(Box::new(tx));
    let context_ptr = std::ptr::from_ref(context).cast::<std::ffi::c_void>();
    let mut handle: HANDLE = std::ptr::null_mut();
    // SAFETY: the callbacks only read the leaked sender; the handles are written by the calls.
    let address = unsafe {
        NotifyUnicastIpAddressChange(
            AF_UNSPEC,
            Some(address_changed),
            context_ptr,
            false,
            &mut handle,
        )
    };
    // SAFETY: as above.
    let route = unsafe {
        NotifyRouteChange2(
            AF_UNSPEC,
            Some(route_changed),
            context_ptr,
            false,
            &mut handle,
        )
    };
    if address != NO_ERROR || route != NO_ERROR {
        tracing::info!(
            "network change notifications: address {address}, route {route} (0 = watching)"
        );
    }
    let params: &'static mut DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS =
        Box::leak(Box::new(DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS {
            Callback: Some(power_changed),
            Context: context_ptr.cast_mut(),
        }));
    let mut registration = std::ptr::null_mut();
    // SAFETY: with DEVICE_NOTIFY_CALLBACK the recipient is the (leaked, 'static) parameters.
    let power = unsafe {
        PowerRegisterSuspendResumeNotification(
            DEVICE_NOTIFY_CALLBACK,
            std::ptr::from_mut(params).cast(),
            &mut registration,
        )
    };
    if power == NO_ERROR {
        super::RESUME_ANNOUNCED.store(true, std::sync::atomic::Ordering::Relaxed);
    } else {
        tracing::info!("no resume notifications (error {power}); the clocks find a resume");
    }
    tokio::spawn(super::forward_settled(rx, commands));
}

/// The context every wake callback gets: the leaked sender of [`spawn_wake_sources`].
fn wake(context: *const std::ffi::c_void, reason: super::WakeReason) {
    // SAFETY: the context is the 'static sender leaked in spawn_wake_sources.
    let tx = unsafe { &*context.cast::<UnboundedSender<super::WakeReason>>() };
    let _ = tx.send(reason);
}

unsafe extern "system" fn address_changed(
    context: *const std::ffi::c_void,
    _row: *const windows_sys::Win32::NetworkManagement::IpHelper::MIB_UNICASTIPADDRESS_ROW,
    _kind: windows_sys::Win32::NetworkManagement::IpHelper::MIB_NOTIFICATION_TYPE,
) {
    wake(context, super::WakeReason::Network);
}

unsafe extern "system" fn route_changed(
    context: *const std::ffi::c_void,
    _row: *const windows_sys::Win32::NetworkManagement::IpHelper::MIB_IPFORWARD_ROW2,
    _kind: windows_sys::Win32::NetworkManagement::IpHelper::MIB_NOTIFICATION_TYPE,
) {
    wake(context, super::WakeReason::Network);
}

/// `PBT_APMRESUMEAUTOMATIC` (every resume) and `PBT_APMRESUMESUSPEND` (a user is present).
unsafe extern "system" fn power_changed(
    context: *const std::ffi::c_void,
    kind: u32,
    _setting: *const std::ffi::c_void,
) -> u32 {
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        PBT_APMRESUMEAUTOMATIC, PBT_APMRESUMESUSPEND,
    };
    if kind == PBT_APMRESUMEAUTOMATIC || kind == PBT_APMRESUMESUSPEND {
        wake(context, super::WakeReason::Resume);
    }
    0
}

/// Windows: the interrupt time counts sleep, the unbiased interrupt time does not
/// (both in 100 ns units).
pub(crate) fn suspended_so_far() -> Option<Duration> {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn QueryUnbiasedInterruptTime(unbiased: *mut u64) -> i32;
        fn GetTickCount64() -> u64;
    }
    let mut unbiased = 0u64;
    // SAFETY: both calls only write into / return plain integers.
    let (ok, ticks_ms) = unsafe { (QueryUnbiasedInterruptTime(&mut unbiased), GetTickCount64()) };
    if ok == 0 {
        return None;
    }
    let awake = Duration::from_nanos(unbiased.saturating_mul(100));
    Some(Duration::from_millis(ticks_ms).saturating_sub(awake))
}

/// Learned intervals are remembered per network; Windows' network identity is not read yet.
pub(crate) fn network_id() -> String {
    "unknown".into()
}

/// The Windows Credential Manager.
pub(crate) fn credential_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    windows_native_keyring_store::Store::new().map(|s| s as Arc<keyring_core::CredentialStore>)
}

/// What the user is told to do when there is no usable keyring.
pub(crate) const KEYRING_UNAVAILABLE_HINT: &str = "the Windows Credential Manager cannot be \
     opened: check that the Credential Manager service is running, or use password_command";

/// A command line of the user's own (`password_command`), run with `cmd /D /S /C "…"`, so that
/// pipes and redirections work: `/D` skips the AutoRun commands of the registry, `/S` takes the
/// text between the outer quotes as it is.
pub(crate) fn shell_std(command_line: &str) -> std::process::Command {
    use std::os::windows::process::CommandExt;
    let mut c = std::process::Command::new("cmd");
    c.args(["/D", "/S", "/C"])
        .raw_arg(format!("\"{command_line}\""));
    super::restore_child_env(&mut c);
    c
}

/// A hook (`on_new_mail`), run without cmd.exe: cmd expands `%VARIABLE%` into the command text
/// before parsing it, so a subject in `%MAILPULSE_SUBJECT%` would become commands. The program
/// is the first word (or the quoted first part) and the rest goes to it as written; the mail
/// stays in the environment, where PowerShell reads it as data (`$env:MAILPULSE_SUBJECT`).
pub(crate) fn hook_std(command_line: &str) -> std::process::Command {
    use std::os::windows::process::CommandExt;
    let (program, rest) = super::split_program(command_line);
    let mut c = std::process::Command::new(program);
    if !rest.is_empty() {
        c.raw_arg(rest);
    }
    super::restore_child_env(&mut c);
    c
}

/// Windows: a hook runs without a shell, so the process tokio kills on a timeout is the hook
/// itself; what it starts by itself is left alone (no job object).
pub(crate) fn kill_hook_group(_pid: u32) {}

pub(crate) use proxy::system_proxy;

/// The user's proxy settings through WinHTTP: what Internet Options / Settings › Network ›
/// Proxy hold (`WinHttpGetIEProxyConfigForCurrentUser`), with a PAC script or auto-detection
/// (WPAD) evaluated by Windows itself (`WinHttpGetProxyForUrl`), as Edge and Outlook see them.
mod proxy {
    use std::ptr::null;

    use windows_sys::Win32::Foundation::{GetLastError, GlobalFree};
    use windows_sys::Win32::Networking::WinHttp::{
        WINHTTP_ACCESS_TYPE_NAMED_PROXY, WINHTTP_ACCESS_TYPE_NO_PROXY,
        WINHTTP_AUTO_DETECT_TYPE_DHCP, WINHTTP_AUTO_DETECT_TYPE_DNS_A,
        WINHTTP_AUTOPROXY_AUTO_DETECT, WINHTTP_AUTOPROXY_CONFIG_URL, WINHTTP_AUTOPROXY_OPTIONS,
        WINHTTP_CURRENT_USER_IE_PROXY_CONFIG, WINHTTP_PROXY_INFO, WinHttpCloseHandle,
        WinHttpGetIEProxyConfigForCurrentUser, WinHttpGetProxyForUrl, WinHttpOpen,
    };

    use crate::platform::SystemProxy;
    use crate::platform::proxy_settings::{bypass_patterns, pick_from_list, pick_from_pac};

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    /// A string WinHTTP allocated, read and freed (`GlobalFree`).
    fn take(p: *mut u16) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: WinHTTP hands out NUL-terminated UTF-16 strings allocated with GlobalAlloc.
        #[allow(unsafe_code)]
        let s = unsafe {
            let len = (0..).take_while(|&i| *p.add(i) != 0).count();
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
            GlobalFree(p.cast());
            s
        };
        Some(s)
    }

    pub(crate) fn system_proxy(url: &str) -> Result<SystemProxy, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let scheme = parsed.scheme().to_owned();
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        // SAFETY: the struct is plain data that WinHTTP fills; its strings are taken (and
        // freed) right after.
        #[allow(unsafe_code)]
        let (auto_detect, pac, list, bypass) = unsafe {
            let mut ie: WINHTTP_CURRENT_USER_IE_PROXY_CONFIG = std::mem::zeroed();
            if WinHttpGetIEProxyConfigForCurrentUser(&mut ie) == 0 {
                // No settings at all for this user: direct.
                return Ok(SystemProxy::Direct);
            }
            (
                ie.fAutoDetect != 0,
                take(ie.lpszAutoConfigUrl),
                take(ie.lpszProxy),
                take(ie.lpszProxyBypass),
            )
        };
        if (auto_detect || pac.is_some())
            && let Some(found) = evaluate_pac(url, pac.as_deref(), auto_detect)
        {
            return Ok(found);
        }
        let Some(list) = list.filter(|l| !l.trim().is_empty()) else {
            return Ok(SystemProxy::Direct);
        };
        if bypass.as_deref().is_some_and(|b| bypass_patterns(b, &host)) {
            return Ok(SystemProxy::Direct);
        }
        Ok(match pick_from_list(&list, &scheme) {
            Some(url) => SystemProxy::Proxy {
                url,
                source: "the Windows proxy settings".into(),
            },
            None => SystemProxy::Direct,
        })
    }

    /// [`ask_winhttp`], remembered for five minutes per URL: auto-detection (WPAD over DHCP and
    /// DNS) can take seconds when there is nothing to find, and a reconnect should not pay it
    /// every time.
    fn evaluate_pac(url: &str, pac: Option<&str>, auto_detect: bool) -> Option<SystemProxy> {
        use std::collections::HashMap;
        use std::sync::Mutex;
        use std::time::{Duration, Instant};
        type Cache = HashMap<(String, Option<String>, bool), (Instant, Option<SystemProxy>)>;
        static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
        const FRESH: Duration = Duration::from_secs(300);
        let key = (url.to_owned(), pac.map(str::to_owned), auto_detect);
        if let Some((at, found)) = CACHE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|c| c.get(&key))
            && at.elapsed() < FRESH
        {
            return found.clone();
        }
        let found = ask_winhttp(url, pac, auto_detect);
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let cache = cache.get_or_insert_with(HashMap::new);
        cache.retain(|_, (at, _)| at.elapsed() < FRESH);
        cache.insert(key, (Instant::now(), found.clone()));
        found
    }

    /// The PAC script's (or WPAD's) answer for `url`; `None` when there is none (no script
    /// found: the manual settings apply, as in Windows itself).
    fn ask_winhttp(url: &str, pac: Option<&str>, auto_detect: bool) -> Option<SystemProxy> {
        let agent = wide("mailpulse");
        let target = wide(url);
        let pac_w = pac.map(wide);
        // SAFETY: every pointer passed lives until the call returns; the session handle is
        // closed on every path; the answer's strings are taken (and freed).
        #[allow(unsafe_code)]
        unsafe {
            let session = WinHttpOpen(
                agent.as_ptr(),
                WINHTTP_ACCESS_TYPE_NO_PROXY,
                null(),
                null(),
                0,
            );
            if session.is_null() {
                return None;
            }
            let mut opts: WINHTTP_AUTOPROXY_OPTIONS = std::mem::zeroed();
            if let Some(p) = &pac_w {
                opts.dwFlags |= WINHTTP_AUTOPROXY_CONFIG_URL;
                opts.lpszAutoConfigUrl = p.as_ptr();
            }
            if auto_detect {
                opts.dwFlags |= WINHTTP_AUTOPROXY_AUTO_DETECT;
                opts.dwAutoDetectFlags =
                    WINHTTP_AUTO_DETECT_TYPE_DHCP | WINHTTP_AUTO_DETECT_TYPE_DNS_A;
            }
            opts.fAutoLogonIfChallenged = 1;
            let mut info: WINHTTP_PROXY_INFO = std::mem::zeroed();
            let ok = WinHttpGetProxyForUrl(session, target.as_ptr(), &mut opts, &mut info) != 0;
            let error = GetLastError();
            WinHttpCloseHandle(session);
            if !ok {
                tracing::debug!(
                    "no proxy from the PAC script / auto-detection (WinHTTP error {error})"
                );
                return None;
            }
            let list = take(info.lpszProxy);
            let _ = take(info.lpszProxyBypass);
            let source = match pac {
                Some(p) => format!("the PAC script {p}"),
                None => "the auto-detected proxy (WPAD)".into(),
            };
            if info.dwAccessType != WINHTTP_ACCESS_TYPE_NAMED_PROXY {
                return Some(SystemProxy::Direct);
            }
            // WinHTTP gives "host:port; host2:port2" (PAC's PROXY entries): the first.
            let first = list.as_deref().and_then(|l| {
                l.split(';')
                    .map(str::trim)
                    .find(|e| !e.is_empty())
                    .map(str::to_owned)
            });
            match first.and_then(|f| pick_from_pac(&format!("PROXY {f}")).flatten()) {
                Some(url) => Some(SystemProxy::Proxy { url, source }),
                None => Some(SystemProxy::Direct),
            }
        }
    }
}

pub(crate) use sign_in::system_sign_in;

/// A proxy's Negotiate or NTLM sign-in through SSPI, as Edge and Outlook do it: with the
/// logged-on user's own credentials (integrated Windows authentication) when the proxy setting
/// names no user, with that user and the stored password otherwise. Negotiate is preferred
/// where offered (Kerberos in a domain, NTLM inside it elsewhere).
mod sign_in {
    use std::ffi::c_void;
    use std::ptr::{null, null_mut};

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use windows_sys::Win32::Foundation::{
        SEC_E_INVALID_TOKEN, SEC_E_LOGON_DENIED, SEC_E_NO_CREDENTIALS, SEC_E_SECPKG_NOT_FOUND,
        SEC_E_TARGET_UNKNOWN, SEC_E_WRONG_PRINCIPAL,
    };
    use windows_sys::Win32::Security::Authentication::Identity::{
        AcquireCredentialsHandleW, DeleteSecurityContext, FreeContextBuffer, FreeCredentialsHandle,
        ISC_REQ_ALLOCATE_MEMORY, ISC_REQ_CONNECTION, InitializeSecurityContextW, SECBUFFER_TOKEN,
        SECBUFFER_VERSION, SECPKG_CRED_OUTBOUND, SECURITY_NATIVE_DREP, SecBuffer, SecBufferDesc,
    };
    use windows_sys::Win32::Security::Credentials::SecHandle;
    use windows_sys::Win32::System::Rpc::{
        SEC_WINNT_AUTH_IDENTITY_UNICODE, SEC_WINNT_AUTH_IDENTITY_W,
    };

    use crate::platform::ConnectionSignIn;

    /// The most a token from the proxy may be (Kerberos tickets with many groups reach 48 KiB).
    const MAX_CHALLENGE: usize = 64 << 10;

    pub(crate) fn system_sign_in(
        offered: &[String],
        proxy_host: &str,
        identity: Option<(&str, &str)>,
    ) -> Result<Option<Box<dyn ConnectionSignIn>>, String> {
        let (package, scheme) = if offered.iter().any(|s| s == "negotiate") {
            ("Negotiate", "Negotiate")
        } else if offered.iter().any(|s| s == "ntlm") {
            ("NTLM", "NTLM")
        } else {
            return Ok(None);
        };
        let sspi = Sspi::new(package, scheme, proxy_host, identity)?;
        Ok(Some(Box::new(sspi)))
    }

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    /// An SSPI status as a sentence the user can act on.
    fn explain(call: &str, status: i32) -> String {
        let what = match status {
            SEC_E_NO_CREDENTIALS => {
                "Windows has no sign-in credentials for it (not signed in to a domain?)"
            }
            SEC_E_LOGON_DENIED => "the user name or password was refused",
            SEC_E_TARGET_UNKNOWN | SEC_E_WRONG_PRINCIPAL => {
                "the domain does not know the proxy's name (ask for its HTTP/ service name)"
            }
            SEC_E_INVALID_TOKEN => "the proxy's challenge is not valid",
            SEC_E_SECPKG_NOT_FOUND => "this Windows lacks the security package",
            _ => "",
        };
        if what.is_empty() {
            format!("{call} failed (0x{:08X})", status as u32)
        } else {
            format!("{what} ({call}: 0x{:08X})", status as u32)
        }
    }

    struct Sspi {
        scheme: &'static str,
        cred: SecHandle,
        ctx: Option<SecHandle>,
        /// `HTTP/proxy.host`, NUL-terminated: the service Kerberos asks a ticket for.
        target: Vec<u16>,
    }

    impl Sspi {
        fn new(
            package: &str,
            scheme: &'static str,
            proxy_host: &str,
            identity: Option<(&str, &str)>,
        ) -> Result<Sspi, String> {
            let mut pkg = wide(package);
            pkg.push(0);
            let mut cred = SecHandle::default();
            let mut expiry = 0i64;
            // `DOMAIN\user`, or a UPN / plain name with no domain (Windows resolves it).
            let (mut user, mut domain, mut password) = match identity {
                Some((u, p)) => {
                    let (domain, user) = u.split_once('\\').unwrap_or(("", u));
                    (wide(user), wide(domain), wide(p))
                }
                None => Default::default(),
            };
            let auth = SEC_WINNT_AUTH_IDENTITY_W {
                User: user.as_mut_ptr(),
                UserLength: user.len() as u32,
                Domain: domain.as_mut_ptr(),
                DomainLength: domain.len() as u32,
                Password: password.as_mut_ptr(),
                PasswordLength: password.len() as u32,
                Flags: SEC_WINNT_AUTH_IDENTITY_UNICODE,
            };
            let auth_ptr: *const c_void = if identity.is_some() {
                &auth as *const SEC_WINNT_AUTH_IDENTITY_W as *const c_void
            } else {
                null()
            };
            // SAFETY: every pointer is valid for the call; the identity's buffers outlive it.
            let status = unsafe {
                AcquireCredentialsHandleW(
                    null(),
                    pkg.as_ptr(),
                    SECPKG_CRED_OUTBOUND,
                    null(),
                    auth_ptr,
                    None,
                    null(),
                    &mut cred,
                    &mut expiry,
                )
            };
            password.iter_mut().for_each(|c| *c = 0);
            if status < 0 {
                return Err(explain("AcquireCredentialsHandle", status));
            }
            let mut target = wide(&format!("HTTP/{proxy_host}"));
            target.push(0);
            Ok(Sspi {
                scheme,
                cred,
                ctx: None,
                target,
            })
        }
    }

    impl ConnectionSignIn for Sspi {
        fn scheme(&self) -> &'static str {
            self.scheme
        }

        fn step(&mut self, challenge: Option<&str>) -> Result<String, String> {
            let input = match challenge {
                Some(c) if c.len() <= MAX_CHALLENGE * 4 / 3 + 4 => Some(
                    STANDARD
                        .decode(c.trim())
                        .map_err(|_| format!("the {} challenge is not base64", self.scheme))?,
                ),
                Some(_) => return Err(format!("the {} challenge is too long", self.scheme)),
                None if self.ctx.is_some() => {
                    return Err(format!("the proxy sent no {} challenge", self.scheme));
                }
                None => None,
            };
            let mut input = input.unwrap_or_default();
            let mut in_buf = SecBuffer {
                cbBuffer: input.len() as u32,
                BufferType: SECBUFFER_TOKEN,
                pvBuffer: input.as_mut_ptr() as *mut c_void,
            };
            let in_desc = SecBufferDesc {
                ulVersion: SECBUFFER_VERSION,
                cBuffers: 1,
                pBuffers: &mut in_buf,
            };
            let mut out_buf = SecBuffer {
                cbBuffer: 0,
                BufferType: SECBUFFER_TOKEN,
                pvBuffer: null_mut(),
            };
            let mut out_desc = SecBufferDesc {
                ulVersion: SECBUFFER_VERSION,
                cBuffers: 1,
                pBuffers: &mut out_buf,
            };
            let mut handle = self.ctx.unwrap_or_default();
            let mut attributes = 0u32;
            let mut expiry = 0i64;
            // SAFETY: the credential handle is live; the context handle is the one the
            // previous step produced (or none on the first); the buffers outlive the call.
            let status = unsafe {
                InitializeSecurityContextW(
                    &self.cred,
                    if self.ctx.is_some() { &handle } else { null() },
                    self.target.as_ptr(),
                    ISC_REQ_CONNECTION | ISC_REQ_ALLOCATE_MEMORY,
                    0,
                    SECURITY_NATIVE_DREP,
                    if challenge.is_some() {
                        &in_desc
                    } else {
                        null()
                    },
                    0,
                    &mut handle,
                    &mut out_desc,
                    &mut attributes,
                    &mut expiry,
                )
            };
            let token = if out_buf.pvBuffer.is_null() {
                Vec::new()
            } else {
                // SAFETY: SSPI allocated cbBuffer bytes (ISC_REQ_ALLOCATE_MEMORY); freed here.
                let t = unsafe {
                    std::slice::from_raw_parts(
                        out_buf.pvBuffer as *const u8,
                        out_buf.cbBuffer as usize,
                    )
                }
                .to_vec();
                unsafe { FreeContextBuffer(out_buf.pvBuffer) };
                t
            };
            if status < 0 {
                return Err(explain("InitializeSecurityContext", status));
            }
            self.ctx = Some(handle);
            if token.is_empty() {
                return Err(format!(
                    "Windows had no {} answer for the proxy",
                    self.scheme
                ));
            }
            Ok(STANDARD.encode(token))
        }
    }

    impl Drop for Sspi {
        fn drop(&mut self) {
            // SAFETY: both handles came from SSPI and are released once.
            unsafe {
                if let Some(ctx) = &self.ctx {
                    DeleteSecurityContext(ctx);
                }
                FreeCredentialsHandle(&self.cred);
            }
        }
    }
}

/// Before the client writes ([`crate::platform`]'s freedesktop room explains): Windows has no per-socket quick-ACK switch (its delayed ACKs are the default).
pub(crate) fn ack_answers_together(_tcp: &tokio::net::TcpStream) {}

/// Sleep until `deadline` (the freedesktop room explains why the long idle waits have their own
/// timer): tokio's, here.
pub(crate) async fn sleep_until(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await
}

/// TCP keep-alive probes after `time` of silence, every `interval` (Windows fixes the count at 10).
pub(crate) fn tcp_keepalive(time: Duration, interval: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval)
}

/// What opens a folder or URL with the default application.
pub(crate) const OPENER: &str = "explorer";

/// The single instance: a named mutex in the session's namespace says whether one runs; a
/// named pipe whose only access rule names this user (and SYSTEM) carries the request, so no
/// other user of the machine can open it, and remote clients are rejected. Both names carry the
/// user's SID and the session, so two users, or one user in two sessions, each have their own.
#[cfg(feature = "desktop")]
pub mod instance {
    use super::*;
    use crate::platform::instance::{ANSWER_WITHIN, answer, ask, listen_thread};
    pub use crate::platform::instance::{Claim, Request};
    use std::fs::File;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use std::time::Instant;
    use windows_sys::Win32::Foundation::{
        ERROR_ALREADY_EXISTS, ERROR_PIPE_CONNECTED, GetLastError, INVALID_HANDLE_VALUE, LocalFree,
    };
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
        SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::{
        GetTokenInformation, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
        TokenUser,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_FIRST_PIPE_INSTANCE, FlushFileBuffers, PIPE_ACCESS_DUPLEX,
    };
    use windows_sys::Win32::System::Pipes::{
        ConnectNamedPipe, CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS,
        PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
    };
    use windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId;
    use windows_sys::Win32::System::Threading::{
        CreateMutexW, GetCurrentProcess, GetCurrentProcessId, OpenProcessToken,
    };

    pub fn claim(
        _state_dir: &Path,
        on_request: impl Fn(Request) + Send + 'static,
    ) -> io::Result<Claim> {
        let names = Names::current()?;
        let wide_mutex = wide(&names.mutex);
        // SAFETY: a plain call with a NUL-terminated name; the handle is kept below.
        let mutex = unsafe { CreateMutexW(std::ptr::null(), 0, wide_mutex.as_ptr()) };
        // SAFETY: read right after the call that set it.
        let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
        if mutex.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh handle owned by nobody else.
        let mutex = unsafe { OwnedHandle::from_raw_handle(mutex) };
        if existed {
            drop(mutex);
            return forward(&names.pipe);
        }
        // Held until the process ends: that is what tells later instances we run.
        std::mem::forget(mutex);
        let security = Security::only_user(&names.sid)?;
        let first = create_pipe(&names.pipe, &security, true)?;
        listen_thread(move || serve(first, &names.pipe, &security, &on_request))?;
        Ok(Claim::First)
    }

    /// Tell the running instance `request` over its pipe; whether one answered.
    pub fn tell(_state_dir: &Path, request: Request) -> bool {
        let Ok(names) = Names::current() else {
            return false;
        };
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&names.pipe)
        {
            Ok(f) => ask(&f, &format!("{}\n", request.line())),
            Err(_) => false,
        }
    }

    /// A second instance: the first may still be starting, so the pipe is retried for a while.
    fn forward(pipe: &str) -> io::Result<Claim> {
        let deadline = Instant::now() + ANSWER_WITHIN;
        loop {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(pipe)
            {
                Ok(f) if ask(&f, &format!("{}\n", Request::OpenSettings.line())) => {
                    return Ok(Claim::Forwarded);
                }
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(_) => break,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "mailpulse is already running in this session but did not answer; end it in the Task \
             Manager if it hangs",
        ))
    }

    fn serve(
        mut pipe: OwnedHandle,
        name: &str,
        security: &Security,
        on_request: &impl Fn(Request),
    ) {
        loop {
            // SAFETY: a valid pipe handle, synchronous (no OVERLAPPED).
            let connected = unsafe { ConnectNamedPipe(pipe.as_raw_handle(), std::ptr::null_mut()) }
                != 0
                || unsafe { GetLastError() } == ERROR_PIPE_CONNECTED;
            // The next instance first, so that a client never finds no pipe at all.
            let next = create_pipe(name, security, false);
            if connected {
                let file = File::from(pipe);
                answer(&file, on_request);
                // SAFETY: a valid handle; lets the client read the answer before it closes.
                unsafe { FlushFileBuffers(file.as_raw_handle()) };
            }
            match next {
                Ok(p) => pipe = p,
                Err(e) => {
                    tracing::warn!("single instance: no further requests ({e})");
                    return;
                }
            }
        }
    }

    fn create_pipe(name: &str, security: &Security, first: bool) -> io::Result<OwnedHandle> {
        let attributes = SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: security.0,
            bInheritHandle: 0,
        };
        let open_mode = PIPE_ACCESS_DUPLEX
            | if first {
                FILE_FLAG_FIRST_PIPE_INSTANCE
            } else {
                0
            };
        let name = wide(name);
        // SAFETY: NUL-terminated name, valid attributes for the duration of the call.
        let h = unsafe {
            CreateNamedPipeW(
                name.as_ptr(),
                open_mode,
                PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                PIPE_UNLIMITED_INSTANCES,
                512,
                512,
                0,
                &attributes,
            )
        };
        if h == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh, valid handle.
        Ok(unsafe { OwnedHandle::from_raw_handle(h) })
    }

    /// The names of this user's objects in this session.
    struct Names {
        sid: String,
        mutex: String,
        pipe: String,
    }

    impl Names {
        fn current() -> io::Result<Names> {
            let sid = current_user_sid()?;
            let mut session = 0u32;
            // SAFETY: writes one integer.
            unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut session) };
            Ok(Names {
                mutex: format!(r"Local\mailpulse-{sid}"),
                pipe: format!(r"\\.\pipe\mailpulse-{sid}-{session}"),
                sid,
            })
        }
    }

    /// A security descriptor whose access list has this user and SYSTEM only (protected: no
    /// inherited entries), built from SDDL; freed with `LocalFree`.
    struct Security(PSECURITY_DESCRIPTOR);

    // SAFETY: the descriptor is immutable after creation.
    unsafe impl Send for Security {}

    impl Security {
        fn only_user(sid: &str) -> io::Result<Security> {
            let sddl = wide(&format!("D:P(A;;GA;;;{sid})(A;;GA;;;SY)"));
            let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
            // SAFETY: NUL-terminated input; `sd` is written on success.
            let ok = unsafe {
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    sddl.as_ptr(),
                    SDDL_REVISION_1,
                    &mut sd,
                    std::ptr::null_mut(),
                )
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Security(sd))
        }
    }

    impl Drop for Security {
        fn drop(&mut self) {
            // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
            unsafe { LocalFree(self.0) };
        }
    }

    /// The user's SID as text (`S-1-5-21-…`), from the process token.
    fn current_user_sid() -> io::Result<String> {
        let mut token = std::ptr::null_mut();
        // SAFETY: the pseudo-handle of this process; `token` is written on success.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh handle.
        let token = unsafe { OwnedHandle::from_raw_handle(token) };
        let mut len = 0u32;
        // SAFETY: asks for the size only.
        unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                std::ptr::null_mut(),
                0,
                &mut len,
            )
        };
        // u64s, so the TOKEN_USER at its start is aligned.
        let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
        // SAFETY: the buffer holds `len` bytes.
        let ok = unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                buf.as_mut_ptr().cast(),
                len,
                &mut len,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: GetTokenInformation filled a TOKEN_USER at the buffer's start.
        let user = unsafe { &*buf.as_ptr().cast::<TOKEN_USER>() };
        let mut text = std::ptr::null_mut();
        // SAFETY: the SID points into `buf`, alive here; `text` is written on success.
        if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a NUL-terminated string allocated by the call, freed right after.
        let sid = unsafe {
            let n = (0..).take_while(|&i| *text.add(i) != 0).count();
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
            LocalFree(text.cast());
            s
        };
        Ok(sid)
    }

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }
}

/// Ctrl-C quits (after logging out), Ctrl-Break reloads the config: the console's two signals.
pub(crate) struct Signals {
    brk: Option<tokio::signal::windows::CtrlBreak>,
}

impl Signals {
    pub(crate) fn new() -> Signals {
        Signals {
            brk: tokio::signal::windows::ctrl_break().ok(),
        }
    }

    pub(crate) async fn next(&mut self) -> Signal {
        let brk = async {
            match self.brk.as_mut() {
                Some(b) => {
                    b.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Quit,
            _ = brk => Signal::Reload,
        }
    }
}

/// Run `cmd` in this process's stead: Windows has no exec, so wait for it and pass its exit
/// code on. Returns only on failure to start it.
pub(crate) fn replace_process(
    mut cmd: std::process::Command,
) -> Result<std::process::ExitCode, io::Error> {
    let status = cmd.status()?;
    Ok(std::process::ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8,
    ))
}

/// The desktop shell's OS part: WebView2, Windows toast notifications (a click opens the mail
/// client or webmail, as on Linux).
#[cfg(feature = "desktop")]
pub(crate) mod desktop {
    pub(crate) use crate::platform::native_desktop::*;

    /// What to do when the settings window's web view cannot be created.
    pub(crate) const WEBVIEW_MISSING_HINT: &str = "install the Microsoft Edge WebView2 Runtime (Windows 11 has it; for Windows 10 Microsoft offers the Evergreen installer), which draws it";

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

    use windows::Data::Xml::Dom::XmlDocument;
    use windows::Foundation::TypedEventHandler;
    use windows::UI::Notifications::{
        ToastDismissedEventArgs, ToastNotification, ToastNotificationManager,
    };
    use windows::core::{HSTRING, IInspectable};

    use crate::toasts::ToastKind;

    /// The application the toasts are shown for. An unpackaged program has no AppUserModelID of
    /// its own until an installer registers one with a Start-menu shortcut, and Windows shows no
    /// toast for an unregistered id; PowerShell's is registered everywhere (notify-rust's default
    /// too).
    const APP_ID: &str =
        r"{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe";
    /// Every mailpulse toast is in this group; the tag tells them apart within it.
    const GROUP: &str = "mailpulse";

    /// A shown toast: its tag (a newer toast for the same slot takes it over, so Windows
    /// replaces the old one in place, in the Action Center too) and its events.
    pub(crate) struct ToastHandle {
        tag: String,
        /// `true` for a click on the toast's body, `false` when it was dismissed.
        events: Mutex<Option<UnboundedReceiver<bool>>>,
    }

    pub(crate) fn toast_hints(_n: &mut notify_rust::Notification, _kind: ToastKind) {}

    /// The toast's XML: the summary as its title, the body below, both as text (`SetInnerText`
    /// escapes them: a subject cannot add elements).
    fn toast_xml(summary: &str, body: &str) -> windows::core::Result<XmlDocument> {
        let doc = XmlDocument::new()?;
        let toast = doc.CreateElement(&HSTRING::from("toast"))?;
        let visual = doc.CreateElement(&HSTRING::from("visual"))?;
        let binding = doc.CreateElement(&HSTRING::from("binding"))?;
        binding.SetAttribute(&HSTRING::from("template"), &HSTRING::from("ToastGeneric"))?;
        for line in [summary, body].into_iter().filter(|l| !l.is_empty()) {
            let text = doc.CreateElement(&HSTRING::from("text"))?;
            text.SetInnerText(&HSTRING::from(line))?;
            binding.AppendChild(&text)?;
        }
        visual.AppendChild(&binding)?;
        toast.AppendChild(&visual)?;
        doc.AppendChild(&toast)?;
        Ok(doc)
    }

    fn show(
        summary: &str,
        body: &str,
        tag: &str,
        events: UnboundedSender<bool>,
    ) -> windows::core::Result<()> {
        let toast = ToastNotification::CreateToastNotification(&toast_xml(summary, body)?)?;
        toast.SetTag(&HSTRING::from(tag))?;
        toast.SetGroup(&HSTRING::from(GROUP))?;
        let clicked = events.clone();
        toast.Activated(&TypedEventHandler::<ToastNotification, IInspectable>::new(
            move |_, _| {
                let _ = clicked.send(true);
                Ok(())
            },
        ))?;
        toast.Dismissed(&TypedEventHandler::<
            ToastNotification,
            ToastDismissedEventArgs,
        >::new(move |_, _| {
            let _ = events.send(false);
            Ok(())
        }))?;
        ToastNotificationManager::CreateToastNotifierWithId(&HSTRING::from(APP_ID))?.Show(&toast)
    }

    pub(crate) async fn show_toast(
        n: &mut notify_rust::Notification,
        old: Option<&ToastHandle>,
    ) -> notify_rust::error::Result<ToastHandle> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // The slot's tag: a toast with the same tag and group replaces the shown one.
        let tag = old.map_or_else(
            || format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            |o| o.tag.clone(),
        );
        let (tx, rx) = unbounded_channel();
        show(&n.summary, &n.body, &tag, tx).map_err(|e| {
            notify_rust::error::Error::from(format!("Windows refused the toast: {e}").as_str())
        })?;
        Ok(ToastHandle {
            tag,
            events: Mutex::new(Some(rx)),
        })
    }

    /// A click on the toast's body runs `clicked`; a dismissal ends the wait (and so does the
    /// notifier aborting it when the toast is replaced).
    pub(crate) async fn wait_for_click(handle: &ToastHandle, clicked: impl FnOnce()) {
        let Some(mut events) = handle
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        if events.recv().await == Some(true) {
            clicked();
        }
    }

    /// Remove the toast (from the screen and the Action Center): the error it told of is over.
    pub(crate) async fn close_toast(handle: &ToastHandle) {
        let removed = ToastNotificationManager::History().and_then(|h| {
            h.RemoveGroupedTagWithId(
                &HSTRING::from(handle.tag.as_str()),
                &HSTRING::from(GROUP),
                &HSTRING::from(APP_ID),
            )
        });
        if let Err(e) = removed {
            tracing::debug!("cannot remove toast {}: {e}", handle.tag);
        }
    }

    /// Nothing to adjust in the tray's own environment on Windows.
    pub(crate) fn prepare_tray_env() {}

    /// Ctrl-C (or the console closing).
    pub(crate) async fn termination() {
        let _ = tokio::signal::ctrl_c().await;
    }
}
