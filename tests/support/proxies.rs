//! Real proxies for the tests: Squid (HTTP CONNECT, Basic authentication with
//! `basic_ncsa_auth`) and Dante (`danted`, SOCKS5), each with its own config, logs and PID in a
//! temporary directory, listening where the test says (on the NAT testbed's gateway, or on
//! 127.0.0.1). Every process is stopped by its PID on drop, also when the test panics.
//! Included by tests/proxy.rs beside `support/netns.rs` (`#[path]`), which it uses as `super::netns`.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a proxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the command that runs a program in a network namespace (`Testbed::gateway_cmd`).
pub type CommandIn = Box<dyn Fn(&str) -> Command + Send>;

/// What a Squid should allow and ask.
#[derive(Clone, Default)]
pub struct SquidOptions {
    /// `user:password` pairs for Basic authentication (none: no authentication).
    pub users: Vec<(String, String)>,
    /// CONNECT only to port 443 (the rule most company proxies have).
    pub only_443: bool,
    /// Seconds after which an idle tunnel is closed (`read_timeout`; Squid's default is 15
    /// minutes).
    pub idle_timeout_secs: Option<u64>,
    /// `/etc/hosts`-style lines Squid resolves names with (it has no DNS here).
    pub hosts: Vec<(String, String)>,
    /// NTLM required, checked for real (NTLMv2) by Samba's `ntlm_auth` against this one
    /// `(DOMAIN, user, password)`; the password without spaces (Squid splits the helper's
    /// command line).
    pub ntlm: Option<(String, String, String)>,
    /// Offer that check only as Negotiate, as a proxy in a Windows domain does (Samba's SPNEGO
    /// helper: SPNEGO-wrapped or raw NTLM, the password checked the same way).
    pub negotiate: bool,
}

pub struct Squid {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub port: u16,
    child: Option<Child>,
    start: Box<dyn Fn() -> Command + Send>,
    netns: Option<String>,
}

fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temporary directory");
    // Squid and Dante drop root for an unprivileged user that writes the logs here.
    set_mode(dir.path(), 0o777);
    dir
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits until `addr:port` accepts a connection (inside `netns` when given).
fn wait_listening(
    netns: Option<&str>,
    addr: &str,
    port: u16,
    child: &mut Child,
    what: &str,
    log: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let target = format!("{addr}:{port}");
        let up = match netns {
            Some(ns) => super::netns::in_netns(ns, || {
                TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(1)).is_ok()
            }),
            None => {
                TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(1)).is_ok()
            }
        };
        if up {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {target} after {START_TIMEOUT:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Squid {
    /// A Squid on `addr:port`; `netns` = run it on the NAT testbed's gateway (its
    /// `gateway_cmd`), `None` = on this machine.
    pub fn start(
        addr: &str,
        port: u16,
        opts: SquidOptions,
        gateway: Option<(&str, CommandIn)>,
    ) -> Squid {
        let dir = shared_dir("mailpulse-squid-");
        let d = dir.path().to_owned();
        let mut conf = format!(
            "http_port {addr}:{port}\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\n\
             cache deny all\n\
             cache_mem 1 MB\n\
             visible_hostname mailpulse-test\n\
             coredump_dir {d}\n\
             shutdown_lifetime 0 seconds\n\
             pinger_enable off\n\
             hosts_file {d}/hosts\n\
             dns_nameservers 127.0.0.1\n\
             acl CONNECT method CONNECT\n",
            d = d.display()
        );
        let hosts: String = opts
            .hosts
            .iter()
            .map(|(ip, name)| format!("{ip} {name}\n"))
            .collect();
        std::fs::write(d.join("hosts"), hosts).unwrap();
        if let Some(t) = opts.idle_timeout_secs {
            conf.push_str(&format!("read_timeout {t} seconds\n"));
        }
        if opts.only_443 {
            conf.push_str("acl SSL_ports port 443\nhttp_access deny CONNECT !SSL_ports\n");
        }
        if !opts.users.is_empty() {
            let mut passwd = String::new();
            for (user, pw) in &opts.users {
                let out = Command::new("openssl")
                    .args(["passwd", "-apr1", pw])
                    .output()
                    .expect("openssl passwd");
                passwd.push_str(&format!(
                    "{user}:{}\n",
                    String::from_utf8_lossy(&out.stdout).trim()
                ));
            }
            std::fs::write(d.join("passwd"), passwd).unwrap();
            set_mode(&d.join("passwd"), 0o644);
            conf.push_str(&format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {}/passwd\n\
                 auth_param basic realm mailpulse-test\n\
                 auth_param basic children 2 startup=1 idle=1\n",
                d.display()
            ));
        }
        if let Some((domain, user, password)) = &opts.ntlm {
            assert!(
                !password.contains(' '),
                "Squid splits the helper's command line"
            );
            assert!(
                Path::new("/usr/bin/ntlm_auth").exists(),
                "Samba's ntlm_auth is missing (Debian: winbind; scripts/install-deps.sh test)"
            );
            let ntlm_auth = format!(
                "/usr/bin/ntlm_auth --helper-protocol=squid-2.5-ntlmssp --domain={domain} \
                 --username={user} --password={password}"
            );
            conf.push_str(&if opts.negotiate {
                format!(
                    "auth_param negotiate program /usr/bin/ntlm_auth --helper-protocol=gss-spnego \
                     --domain={domain} --username={user} --password={password}\n\
                     auth_param negotiate children 2 startup=1 idle=1\n"
                )
            } else {
                format!(
                    "auth_param ntlm program {ntlm_auth}\n\
                     auth_param ntlm children 2 startup=1 idle=1\n"
                )
            });
        }
        if !opts.users.is_empty() || opts.ntlm.is_some() {
            conf.push_str("acl users proxy_auth REQUIRED\nhttp_access deny !users\n");
        }
        conf.push_str("http_access allow all\n");
        std::fs::write(d.join("squid.conf"), conf).unwrap();
        let conf_path = d.join("squid.conf");
        let netns = gateway.as_ref().map(|(ns, _)| (*ns).to_owned());
        // The service name prefixes Squid's shared-memory segments: one of its own per Squid,
        // so that several run side by side.
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let service = format!(
            "mailpulse{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let start: Box<dyn Fn() -> Command + Send> = match gateway {
            Some((_, cmd)) => Box::new(move || {
                let mut c = cmd("squid");
                c.arg("-N")
                    .arg("-n")
                    .arg(&service)
                    .arg("-f")
                    .arg(&conf_path);
                c
            }),
            None => Box::new(move || {
                let mut c = Command::new("squid");
                c.arg("-N")
                    .arg("-n")
                    .arg(&service)
                    .arg("-f")
                    .arg(&conf_path);
                c
            }),
        };
        let mut squid = Squid {
            dir,
            addr: addr.to_owned(),
            port,
            child: None,
            start,
            netns,
        };
        squid.start_again();
        squid
    }

    /// Starts the (stopped) Squid again with the same config, address and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Squid is running");
        let mut child = (self.start)()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start squid (Debian package squid)");
        let dir = self.dir.path().to_owned();
        wait_listening(
            self.netns.as_deref(),
            &self.addr,
            self.port,
            &mut child,
            "squid",
            &|| std::fs::read_to_string(dir.join("cache.log")).unwrap_or_default(),
        );
        self.child = Some(child);
    }

    /// `http://addr:port`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.addr, self.port)
    }

    /// The access log: one line per request (`CONNECT host:port`, its status, the user).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Requests answered with `status` (e.g. `TCP_DENIED/407`) so far.
    pub fn count(&self, status: &str) -> usize {
        self.access_log()
            .lines()
            .filter(|l| l.contains(status))
            .count()
    }

    pub fn cache_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cache.log")).unwrap_or_default()
    }

    /// Kills Squid (SIGKILL by PID, as a crash or a power cut would) and reaps it; its
    /// authentication helpers end with their pipe.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.path().join("squid.pid"));
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Dante's SOCKS5 server, on the NAT testbed's gateway (`gateway_cmd`), leaving through the
/// gateway's server-side interface.
pub struct Dante {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub port: u16,
    child: Option<Child>,
}

impl Dante {
    pub fn start(
        netns: &str,
        addr: &str,
        port: u16,
        external_if: &str,
        cmd: &dyn Fn(&str) -> Command,
    ) -> Dante {
        let dir = shared_dir("mailpulse-dante-");
        let d = dir.path().to_owned();
        let conf = format!(
            "logoutput: {d}/danted.log\n\
             internal: {addr} port = {port}\n\
             external: {external_if}\n\
             clientmethod: none\n\
             socksmethod: none\n\
             user.privileged: root\n\
             user.unprivileged: nobody\n\
             client pass {{\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  log: connect disconnect error\n}}\n\
             socks pass {{\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  command: connect\n  log: connect disconnect error\n}}\n",
            d = d.display()
        );
        std::fs::write(d.join("danted.conf"), conf).unwrap();
        let mut child = cmd("danted")
            .arg("-f")
            .arg(d.join("danted.conf"))
            .arg("-p")
            .arg(d.join("danted.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start danted (Debian package dante-server)");
        let log = d.join("danted.log");
        wait_listening(Some(netns), addr, port, &mut child, "danted", &|| {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        Dante {
            dir,
            addr: addr.to_owned(),
            port,
            child: Some(child),
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}:{}", self.addr, self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("danted.log")).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("danted.log")
    }
}

impl Drop for Dante {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM by PID: danted ends its own helper processes on it; the testbed kills
            // whatever is left in the namespace.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
