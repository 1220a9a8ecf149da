//! A NAT/firewall testbed made of three network namespaces, so that the agent's connection to
//! the mail server crosses a real Linux gateway whose conntrack/NAT state forgets idle flows:
//!
//! ```text
//!   client ns                 gateway ns                            server ns
//!   agent ── cl 10.231.N.2 ── gc 10.231.N.1 │ gs 10.232.N.1 ── sv 10.232.N.2:143 ── forwarder
//!                             ip_forward=1, nftables:                        (socket in the
//!                             masquerade random out of gs,                    server ns) ──►
//!                             established/related back,                   Dovecot on the host's
//!                             new only from gc, server side dropped       127.0.0.1 (loopback)
//!                             (or rejected with TCP RST), short
//!                             nf_conntrack_tcp_timeout_established,
//!                             nf_conntrack_tcp_loose = 0
//! ```
//!
//! The server end of the agent's TCP connection is a socket *in the server namespace* (its
//! listener is created on a thread that entered that namespace with `setns(2)`; a socket stays
//! in the namespace it was created in). What Dovecot sends is written into that socket, so the
//! server namespace's kernel sends it across the gateway, retransmits it when the gateway drops
//! it, and is reset when the gateway rejects it: the gateway's conntrack/NAT state governs the
//! whole flow, exactly as between a client behind a PAT box and a server on the Internet.
//! Dovecot itself stays the unchanged harness instance on 127.0.0.1 of the root namespace
//! (LMTP delivery, doveadm and the rawlogs work as in every other test).
//!
//! Addresses are private and exist only inside the three namespaces this file creates; nothing
//! is added to the root namespace, so no traffic can leave them. Every test gets its own names
//! (`mpnat-<pid>-<n>-{c,g,s}`) and its own address ranges (`N` = `n`). [`Testbed`]'s `Drop`
//! stops the forwarder, kills every process still inside the namespaces by PID and deletes the
//! namespaces by name, also when the test panics. Namespaces left behind by a test process that
//! was killed (its PID no longer alive) are deleted by the next [`Testbed::new`].
//!
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), `ip` (iproute2), `nft` (nftables) and `conntrack`
//! (conntrack). Every external command runs with a deadline.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// How long one `ip`/`nft`/`sysctl`/`conntrack` invocation may take.
const CMD_TIMEOUT: Duration = Duration::from_secs(20);
/// The port the server listens on inside the server namespace.
pub const SERVER_PORT: u16 = 143;
/// Prefix of every namespace this file creates.
const PREFIX: &str = "mpnat-";

/// Interface names; they are local to their namespaces, so every testbed uses the same ones.
const CLIENT_IF: &str = "cl";
const GW_CLIENT_IF: &str = "gc";
const GW_SERVER_IF: &str = "gs";
const SERVER_IF: &str = "sv";

/// The gateway's nftables ruleset: a PAT box with a stateful firewall. Only the client side
/// may start flows; replies of known flows pass; everything else is dropped by the policies
/// (or rejected with a TCP RST in [`GatewayMode::Reset`]).
const RULESET: &str = r#"
table inet mailpulse_nat {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "@CLIENT@" oifname "@SERVER@" ct state new meta l4proto { tcp, icmp } accept
    @FORWARD_RESET@
  }
  chain input {
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
    @INPUT_RESET@
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "@SERVER@" masquerade random
  }
}
"#;

/// What the gateway does with packets of a flow it has forgotten (and with anything the server
/// side tries to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMode {
    /// Silently drop them (most home routers and carrier NATs).
    Drop,
    /// Answer with a TCP RST (`reject with tcp reset`), towards the client for its packets of
    /// a forgotten flow, towards the server for what it sends to the gateway's public address.
    Reset,
}

#[allow(unsafe_code)]
mod sys {
    unsafe extern "C" {
        /// glibc's `setns(2)`; std links libc anyway.
        pub fn setns(fd: i32, nstype: i32) -> i32;
    }
    pub const CLONE_NEWNET: i32 = 0x4000_0000;
}

/// Runs `f` on a new thread that has entered the network namespace `name` (`/run/netns/NAME`).
/// Sockets created there stay in that namespace; child processes spawned there start in it.
/// The calling thread's namespace is never changed.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{name}");
    thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid namespace fd only changes this (short-lived) thread.
            #[allow(unsafe_code)]
            let rc = unsafe { sys::setns(ns.as_raw_fd(), sys::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Runs a command to completion with a deadline (killed by PID when it passes); returns
/// (success, stdout, stderr).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(s) => (s.success(), stdout, stderr),
        None => (false, stdout, format!("{stderr}\n(killed after {limit:?})")),
    }
}

/// Runs `program args…`, panicking with its output unless it succeeds; returns stdout.
fn must(program: &str, args: &[&str]) -> String {
    let (ok, out, err) = run_bounded(Command::new(program).args(args), CMD_TIMEOUT);
    assert!(ok, "{program} {}: failed\n{out}{err}", args.join(" "));
    out
}

/// Runs `program args…` and ignores the result (cleanup).
fn attempt(program: &str, args: &[&str]) -> bool {
    run_bounded(Command::new(program).args(args), CMD_TIMEOUT).0
}

/// Three namespaces client → gateway → server; see the module documentation.
pub struct Testbed {
    n: u32,
    client: String,
    gw: String,
    srv: String,
    mode: GatewayMode,
    forwarder: Mutex<Option<Forwarder>>,
}

impl Testbed {
    /// Creates the namespaces, links, addresses, routes, the gateway's nftables ruleset and its
    /// conntrack settings (`nf_conntrack_tcp_timeout_established = nat_timeout_secs`,
    /// `nf_conntrack_tcp_loose = 0`). Panics (after cleaning up) when any step fails.
    pub fn new(nat_timeout_secs: u32, mode: GatewayMode) -> Testbed {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        static SWEEP: Once = Once::new();
        SWEEP.call_once(remove_stale_namespaces);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst) % 250 + 1;
        let pid = std::process::id();
        let name = |role: &str| format!("{PREFIX}{pid}-{n}-{role}");
        // The guard exists before the first namespace does: a failing step cleans up.
        let tb = Testbed {
            n,
            client: name("c"),
            gw: name("g"),
            srv: name("s"),
            mode,
            forwarder: Mutex::new(None),
        };
        tb.build(nat_timeout_secs);
        tb
    }

    fn build(&self, nat_timeout_secs: u32) {
        let (c, g, s) = (self.client.as_str(), self.gw.as_str(), self.srv.as_str());
        for ns in [c, g, s] {
            must("ip", &["netns", "add", ns]);
        }
        // The veth pairs are created inside the namespaces: nothing appears in the root one.
        must(
            "ip",
            &[
                "-n",
                c,
                "link",
                "add",
                CLIENT_IF,
                "type",
                "veth",
                "peer",
                "name",
                GW_CLIENT_IF,
                "netns",
                g,
            ],
        );
        must(
            "ip",
            &[
                "-n",
                s,
                "link",
                "add",
                SERVER_IF,
                "type",
                "veth",
                "peer",
                "name",
                GW_SERVER_IF,
                "netns",
                g,
            ],
        );
        let client_net = format!("10.231.{}", self.n);
        let server_net = format!("10.232.{}", self.n);
        for (ns, dev, addr) in [
            (c, CLIENT_IF, format!("{client_net}.2/24")),
            (g, GW_CLIENT_IF, format!("{client_net}.1/24")),
            (g, GW_SERVER_IF, format!("{server_net}.1/24")),
            (s, SERVER_IF, format!("{server_net}.2/24")),
        ] {
            must("ip", &["-n", ns, "addr", "add", &addr, "dev", dev]);
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        for ns in [c, g, s] {
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        // The client reaches the server network through the gateway (no default route: there
        // is nothing else to reach). The server needs no route: it only ever answers the
        // gateway's own address, which is on its link (masquerade).
        must(
            "ip",
            &[
                "-n",
                c,
                "route",
                "add",
                &format!("{server_net}.0/24"),
                "via",
                &format!("{client_net}.1"),
            ],
        );
        self.gw_exec("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        self.load_ruleset();
        // The conntrack sysctls exist in a namespace once conntrack is in use there (the
        // ruleset above uses it); they are per network namespace.
        self.gw_exec(
            "sysctl",
            &["-q", "-w", "net.netfilter.nf_conntrack_tcp_loose=0"],
        );
        self.set_nat_timeout(nat_timeout_secs);
        assert_eq!(
            self.gw_sysctl("net.netfilter.nf_conntrack_tcp_loose"),
            "0",
            "nf_conntrack_tcp_loose"
        );
    }

    fn load_ruleset(&self) {
        let reset = match self.mode {
            GatewayMode::Drop => ("", ""),
            GatewayMode::Reset => (
                // The client's packets of a forgotten flow: ct state invalid (tcp_loose = 0
                // does not adopt a mid-stream packet), and whatever the server side starts.
                "meta l4proto tcp reject with tcp reset",
                // The server's packets of a forgotten flow are addressed to the gateway itself.
                "iifname \"@SERVER@\" meta l4proto tcp reject with tcp reset",
            ),
        };
        let ruleset = RULESET
            .replace("@FORWARD_RESET@", reset.0)
            .replace("@INPUT_RESET@", reset.1)
            .replace("@CLIENT@", GW_CLIENT_IF)
            .replace("@SERVER@", GW_SERVER_IF);
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(ruleset.as_bytes()).expect("write ruleset");
        let path = file.path().to_str().unwrap().to_owned();
        self.gw_exec("nft", &["-f", &path]);
    }

    /// `ip netns exec <gateway> program args…`, must succeed; returns stdout.
    fn gw_exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.gw.as_str(), program];
        all.extend_from_slice(args);
        must("ip", &all)
    }

    fn gw_sysctl(&self, key: &str) -> String {
        self.gw_exec("sysctl", &["-n", key]).trim().to_string()
    }

    /// Sets the gateway's idle timeout for established TCP flows (this namespace only). An
    /// entry's timer is re-armed with the new value by its next packet.
    pub fn set_nat_timeout(&self, secs: u32) {
        let key = "net.netfilter.nf_conntrack_tcp_timeout_established";
        self.gw_exec("sysctl", &["-q", "-w", &format!("{key}={secs}")]);
        assert_eq!(
            self.gw_sysctl(key),
            secs.to_string(),
            "{key} in the gateway"
        );
    }

    /// The gateway's idle timeout for established TCP flows, read back from its namespace.
    pub fn nat_timeout(&self) -> u32 {
        self.gw_sysctl("net.netfilter.nf_conntrack_tcp_timeout_established")
            .parse()
            .unwrap()
    }

    pub fn mode(&self) -> GatewayMode {
        self.mode
    }

    pub fn client_ns(&self) -> &str {
        &self.client
    }
    pub fn gateway_ns(&self) -> &str {
        &self.gw
    }
    pub fn server_ns(&self) -> &str {
        &self.srv
    }

    /// The client's own address (before masquerading).
    pub fn client_ip(&self) -> String {
        format!("10.231.{}.2", self.n)
    }

    /// The gateway's address on the server side: the source address the server sees.
    pub fn public_ip(&self) -> String {
        format!("10.232.{}.1", self.n)
    }

    /// The server's address as the client sees it (there is no DNAT: the same everywhere).
    pub fn server_ip(&self) -> String {
        format!("10.232.{}.2", self.n)
    }

    pub fn server_port(&self) -> u16 {
        SERVER_PORT
    }

    /// `ip:port` of the server as the client sees it.
    pub fn server_addr(&self) -> String {
        format!("{}:{}", self.server_ip(), SERVER_PORT)
    }

    /// Makes `127.0.0.1:target` (e.g. Dovecot's plaintext IMAP port) reachable at
    /// [`server_addr`](Self::server_addr): a listener in the server namespace whose accepted
    /// connections are relayed to the target on the host's loopback.
    pub fn serve(&self, target: u16) {
        let addr = (self.server_ip(), SERVER_PORT);
        let listener = in_netns(&self.srv, move || {
            TcpListener::bind(addr.clone()).unwrap_or_else(|e| {
                panic!("bind {}:{} in the server namespace: {e}", addr.0, addr.1)
            })
        });
        let mut slot = self.forwarder.lock().unwrap();
        assert!(slot.is_none(), "serve() called twice");
        *slot = Some(Forwarder::start(listener, target));
    }

    /// Bytes the server side received from the client (up) and sent towards it (down), counted
    /// at the server end, and the number of connections it accepted.
    pub fn server_bytes(&self) -> (u64, u64) {
        let f = self.forwarder.lock().unwrap();
        let f = f.as_ref().expect("serve() first");
        (
            f.shared.up.load(Ordering::SeqCst),
            f.shared.down.load(Ordering::SeqCst),
        )
    }

    /// Connections the server side accepted so far.
    pub fn server_connections(&self) -> u64 {
        let f = self.forwarder.lock().unwrap();
        f.as_ref()
            .map_or(0, |f| f.shared.accepted.load(Ordering::SeqCst))
    }

    /// Makes `name` resolve to the server's address in the client namespace, for commands
    /// started by [`client_cmd`](Self::client_cmd): `ip netns exec` mounts
    /// `/etc/netns/<client>/hosts` over `/etc/hosts`. (TLS needs a name the server's
    /// certificate holds.)
    pub fn resolve_server_name(&self, name: &str) {
        let dir = Path::new("/etc/netns").join(&self.client);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<client>");
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{} {name}\n", self.server_ip()),
        )
        .expect("write the client namespace's hosts file");
    }

    /// Packets and bytes of whole frames (Ethernet header included) on the client's link, both
    /// directions: the interface's own counters, which see every segment of every flow.
    pub fn client_link_counters(&self) -> (u64, u64) {
        let out = must(
            "ip",
            &[
                "-n",
                &self.client,
                "-s",
                "-j",
                "link",
                "show",
                "dev",
                CLIENT_IF,
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j link output");
        let stats = &v[0]["stats64"];
        let n = |dir: &str, what: &str| stats[dir][what].as_u64().expect("interface counter");
        (
            n("rx", "packets") + n("tx", "packets"),
            n("rx", "bytes") + n("tx", "bytes"),
        )
    }

    /// `ip netns exec <client> program`: a command that runs in the client namespace.
    pub fn client_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client, program]);
        c
    }

    /// Runs `f` on a thread inside the client namespace: processes it spawns (e.g.
    /// `Watch::start`) run there, like `ip netns exec <client>` but keeping the caller's
    /// `Command` with its environment.
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.client, f)
    }

    /// Cuts the client↔gateway link (the gateway's end goes down; the client's end loses its
    /// carrier). Established flows and their conntrack entries stay; packets are lost.
    pub fn link_down(&self) {
        must("ip", &["-n", &self.gw, "link", "set", GW_CLIENT_IF, "down"]);
    }

    pub fn link_up(&self) {
        must("ip", &["-n", &self.gw, "link", "set", GW_CLIENT_IF, "up"]);
    }

    /// Gives the gateway another address on the client link (`10.231.N.<host>`) and returns it:
    /// a second "router" the client can move its default route to (another network, as far as
    /// the client's network identity goes).
    pub fn add_gateway_client_address(&self, host: u8) -> String {
        let addr = format!("10.231.{}.{host}", self.n);
        must(
            "ip",
            &[
                "-n",
                &self.gw,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                GW_CLIENT_IF,
            ],
        );
        addr
    }

    /// Sets (or replaces) the client's default route via `via`. The server network keeps its
    /// own, more specific route, so established connections are not affected; the change is
    /// what a network change looks like to the client (an rtnetlink route event).
    pub fn set_client_default_route(&self, via: &str) {
        must(
            "ip",
            &[
                "-n",
                &self.client,
                "route",
                "replace",
                "default",
                "via",
                via,
                "dev",
                CLIENT_IF,
            ],
        );
    }

    /// The client's address of the gateway (`10.231.N.1`).
    pub fn gateway_client_ip(&self) -> String {
        format!("10.231.{}.1", self.n)
    }

    /// The client side's interface name (what the agent's network identity names).
    pub fn client_if(&self) -> &'static str {
        CLIENT_IF
    }

    /// `conntrack -L` in the gateway namespace (one line per flow).
    pub fn conntrack_entries(&self) -> String {
        self.gw_exec("conntrack", &["-L"])
    }

    /// The conntrack lines of TCP flows to the server port.
    pub fn server_flows(&self) -> Vec<String> {
        let dport = format!("dport={SERVER_PORT} ");
        self.conntrack_entries()
            .lines()
            .filter(|l| l.starts_with("tcp") && l.contains(&dport))
            .map(str::to_owned)
            .collect()
    }

    /// `nft list ruleset` of the gateway (with counters, for failure messages).
    pub fn ruleset(&self) -> String {
        self.gw_exec("nft", &["list", "ruleset"])
    }

    fn teardown(&self) {
        if let Some(f) = self.forwarder.lock().map(|mut f| f.take()).unwrap_or(None) {
            drop(f);
        }
        for ns in [&self.client, &self.gw, &self.srv] {
            kill_processes_in(ns);
            attempt("ip", &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.client));
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.gw));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Kills (SIGKILL, by PID) every process still inside the namespace.
fn kill_processes_in(ns: &str) {
    let (_, pids, _) = run_bounded(Command::new("ip").args(["netns", "pids", ns]), CMD_TIMEOUT);
    for pid in pids.split_whitespace() {
        if pid.parse::<u32>().is_ok() && pid != std::process::id().to_string() {
            attempt("kill", &["-KILL", pid]);
        }
    }
}

/// Deletes `mpnat-<pid>-…` namespaces whose creating test process is gone.
fn remove_stale_namespaces() {
    let (_, list, _) = run_bounded(Command::new("ip").args(["netns", "list"]), CMD_TIMEOUT);
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_processes_in(name);
            attempt("ip", &["netns", "del", name]);
        }
    }
}

#[derive(Default)]
struct Shared {
    up: AtomicU64,
    down: AtomicU64,
    accepted: AtomicU64,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// Accepts on a listener in the server namespace and relays each connection to
/// `127.0.0.1:target` in the root namespace. When either side ends or fails (e.g. the gateway
/// reset the server-namespace socket), the other side is closed too.
struct Forwarder {
    shared: Arc<Shared>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(listener: TcpListener, target: u16) -> Forwarder {
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept_thread = thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((outside, _)) => {
                        outside.set_nonblocking(false).unwrap();
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        // This thread is in the root namespace: 127.0.0.1 is the host's.
                        let Ok(inside) = TcpStream::connect(("127.0.0.1", target)) else {
                            let _ = outside.shutdown(Shutdown::Both);
                            continue;
                        };
                        let _ = inside.set_nodelay(true);
                        let _ = outside.set_nodelay(true);
                        {
                            let mut conns = s.conns.lock().unwrap();
                            conns.push(outside.try_clone().unwrap());
                            conns.push(inside.try_clone().unwrap());
                        }
                        pump(
                            outside.try_clone().unwrap(),
                            inside.try_clone().unwrap(),
                            s.clone(),
                            true,
                        );
                        pump(inside, outside, s.clone(), false);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Forwarder {
            shared,
            accept_thread: Some(accept_thread),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, s: Arc<Shared>, upstream: bool) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let counter = if upstream { &s.up } else { &s.down };
            counter.fetch_add(n as u64, Ordering::SeqCst);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// A network namespace with nothing but loopback: no route anywhere, so a DNS query to the
/// machine's nameserver fails at once instead of leaving the test's own namespaces.
pub struct Isolated {
    name: String,
}

impl Isolated {
    pub fn new() -> Isolated {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = Isolated {
            name: format!("{PREFIX}{}-iso{n}", std::process::id()),
        };
        must("ip", &["netns", "add", &ns.name]);
        must("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread inside the namespace (see [`in_netns`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.name, f)
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        kill_processes_in(&self.name);
        attempt("ip", &["netns", "del", &self.name]);
    }
}

impl Testbed {
    /// The firewall of a company whose only way out is its proxy: every flow the client starts
    /// through the gateway is dropped, and the client may reach only `ports` on the gateway
    /// itself, where the tests run their proxies (which reach the server network from there).
    pub fn proxy_only(&self, ports: &[u16]) {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        self.gw_exec(
            "nft",
            &[
                "insert",
                "rule",
                "inet",
                "mailpulse_nat",
                "forward",
                "iifname",
                GW_CLIENT_IF,
                "ct",
                "state",
                "new",
                "drop",
            ],
        );
        self.gw_exec(
            "nft",
            &[
                "add",
                "rule",
                "inet",
                "mailpulse_nat",
                "input",
                "iifname",
                GW_CLIENT_IF,
                "tcp",
                "dport",
                &format!("{{ {} }}", ports.join(", ")),
                "accept",
            ],
        );
    }

    /// `ip netns exec <gateway> …`: a command that runs on the gateway (a proxy, say).
    pub fn gateway_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.gw, program]);
        c
    }

    /// Makes `name` resolve to the server's address for programs started with
    /// [`gateway_cmd`](Self::gateway_cmd) (a SOCKS proxy resolving names for the client).
    pub fn resolve_server_name_on_gateway(&self, name: &str) {
        let dir = Path::new("/etc/netns").join(&self.gw);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<gateway>");
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{} {name}\n", self.server_ip()),
        )
        .expect("write the gateway namespace's hosts file");
    }
}
