//! mailpulse behind a network whose only way out is a proxy: the NAT testbed
//! (tests/support/netns.rs) with the gateway's firewall dropping every flow the client starts,
//! and a real Squid (HTTP CONNECT) or Dante (SOCKS5) on the gateway that reaches the server
//! network from there. The real binary runs in the client namespace against the harness's
//! Dovecot over TLS (certificate for `imap.mailpulse.test`, which only the proxy resolves).
//! What a user sees is asserted: mail announced once, errors that name the hop that failed,
//! and a proxy that wants credentials never hammered.
//!
//! The EWS and Graph test servers are reached through a Squid on 127.0.0.1, its access log
//! showing the tunnel.
//!
//! Needs root, iproute2, nftables, squid and dante-server (Debian packages).
// Linux only: network namespaces, nftables, Squid, Dante and a private Dovecot.
#![cfg(target_os = "linux")]

#[path = "support/netns.rs"]
mod netns;
#[path = "support/proxies.rs"]
mod proxies;
mod support;

use std::time::Instant;

use netns::{GatewayMode, Testbed};
use proxies::{Dante, Squid, SquidOptions};
use serde_json::Value;
use support::agent::{Home, Watch, of_type, output_within, secs, subjects};
use support::dovecot::{Dovecot, DovecotOptions};
use support::tls::NETNS_SERVER_NAME;

const USER: &str = "alice";
const PASSWORD: &str = "secret-pw";
const SQUID_PORT: u16 = 3128;
const SOCKS_PORT: u16 = 1080;

/// The NAT timeout is long: these tests are about the proxy, not the NAT.
fn testbed(d: &Dovecot) -> Testbed {
    let tb = Testbed::new(600, GatewayMode::Drop);
    tb.serve(d.imaps_port());
    tb.resolve_server_name_on_gateway(NETNS_SERVER_NAME);
    tb.proxy_only(&[SQUID_PORT, SOCKS_PORT]);
    tb
}

fn squid(tb: &Testbed, mut opts: SquidOptions) -> Squid {
    opts.hosts
        .push((tb.server_ip(), NETNS_SERVER_NAME.to_owned()));
    let gw = tb.gateway_ns().to_owned();
    let cmd = {
        let gw = gw.clone();
        move |program: &str| {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", &gw, program]);
            c
        }
    };
    Squid::start(
        &tb.gateway_client_ip(),
        SQUID_PORT,
        opts,
        Some((&gw, Box::new(cmd))),
    )
}

/// An agent home: the account is the server behind the gateway, over TLS, by the name only
/// the proxy can resolve; `network` is the `[network]` table's body.
fn home_for(d: &Dovecot, network: &str, keepalive: &str) -> Home {
    let home = Home::new();
    let pw = home.password_file(PASSWORD);
    home.write_config(&format!(
        "[keepalive]\ncheck_on_wake = false\nresponse_timeout_secs = 5\n{keepalive}\n\n\
         [network]\n{network}\n\n\
         [[accounts]]\nname = \"work\"\nhost = \"{NETNS_SERVER_NAME}\"\nport = {}\n\
         security = \"tls\"\nusername = \"{USER}\"\npassword_command = \"cat '{}'\"\nca_file = \"{}\"\n",
        netns::SERVER_PORT,
        pw.display(),
        d.ca_pem().display()
    ));
    home
}

/// `mailpulse check` in the client namespace, with `env`.
fn check(tb: &Testbed, home: &Home, env: &[(&str, &str)]) -> (bool, String, String) {
    let out = tb.in_client(|| {
        let mut c = home.command(&["check"]);
        c.envs(env.iter().copied());
        output_within(c, secs(60))
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dovecot() -> Dovecot {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Old <old@example.org>", "old one", "x");
    d
}

fn connected(w: &Watch) -> Vec<Value> {
    let mut seen = w.until_type(secs(40), "connected");
    seen.extend(w.until(secs(20), |v| v["type"] == "state" && v["state"] == "idle"));
    seen
}

#[test]
fn imap_over_tls_through_squid_when_nothing_else_gets_out() {
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(&tb, SquidOptions::default());

    // Straight to the server: the firewall drops it.
    let direct = home_for(&d, "proxy = \"none\"", "");
    let (ok, _, err) = check(&tb, &direct, &[]);
    assert!(!ok, "the firewall must block direct connections: {err}");
    assert!(err.contains("direct (proxy = \"none\")"), "{err}");

    // Through the proxy: the newest item, and `check` says which way it went.
    let home = home_for(&d, &format!("proxy = \"{}\"", proxy.url()), "");
    let (ok, out, err) = check(&tb, &home, &[]);
    assert!(
        ok,
        "check through the proxy failed:\n{out}\n{err}\n{}",
        proxy.cache_log()
    );
    assert!(out.contains("subject=\"old one\""), "{out}");
    assert!(
        err.contains(&format!("through {} (from the config)", proxy.url())),
        "{err}"
    );
    let log = proxy.access_log();
    assert!(
        log.contains(&format!(
            "CONNECT {NETNS_SERVER_NAME}:{}",
            netns::SERVER_PORT
        )),
        "the tunnel in Squid's log:\n{log}"
    );

    // The agent: connected through the tunnel, a new mail announced once.
    let w = tb.in_client(|| Watch::start(&home));
    connected(&w);
    d.deliver(USER, "Bob <bob@example.org>", "through the proxy", "hello");
    let events = w.until(secs(20), |v| v["type"] == "new_mail");
    assert_eq!(subjects(&events), ["through the proxy"]);
    let more = w.during(secs(3));
    assert!(subjects(&more).is_empty(), "announced twice: {more:?}");
    let before = d.flags_snapshot(USER);
    assert!(
        before.iter().all(|(_, f)| !f.contains("\\Seen")),
        "{before:?}"
    );
}

#[test]
fn a_proxy_that_closes_idle_tunnels_loses_no_mail() {
    // Squid closes a tunnel after 12 s without traffic; the keep-alive comes every 30 s.
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(
        &tb,
        SquidOptions {
            idle_timeout_secs: Some(12),
            ..SquidOptions::default()
        },
    );
    let home = home_for(
        &d,
        &format!("proxy = \"{}\"", proxy.url()),
        "interval_secs = 30",
    );
    let w = tb.in_client(|| Watch::start(&home));
    connected(&w);
    let mut log = Vec::new();
    for (i, quiet) in [20u64, 35].into_iter().enumerate() {
        // A quiet gap longer than the proxy's idle timeout, then a mail.
        log.extend(w.during(secs(quiet)));
        let subject = format!("after quiet gap {i}");
        d.deliver(USER, "Bob <bob@example.org>", &subject, "hello");
        let delivered = Instant::now();
        let seen = w.until(secs(40), |v| {
            v["type"] == "new_mail" && v["subject"] == subject.as_str()
        });
        let late = delivered.elapsed();
        log.extend(seen);
        assert!(
            late < secs(10),
            "{subject} announced {late:?} after delivery: the tunnel's end was not noticed\n{log:?}"
        );
    }
    log.extend(w.during(secs(3)));
    let mut got = subjects(&log);
    got.sort();
    assert_eq!(got, ["after quiet gap 0", "after quiet gap 1"], "{log:?}");
    assert!(
        proxy.count("TCP_TUNNEL") >= 2,
        "Squid should have closed idle tunnels:\n{}",
        proxy.access_log()
    );
}

#[test]
fn a_proxy_that_wants_a_password_gets_it_from_the_keyring_and_is_never_hammered() {
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(
        &tb,
        SquidOptions {
            users: vec![("pat".into(), "proxy pässword".into())],
            ..SquidOptions::default()
        },
    );
    let mut daemons = support::keyring::Daemons::start();
    daemons.start_keyring();
    let bus = daemons.bus_address.clone();
    let env = [("DBUS_SESSION_BUS_ADDRESS", bus.as_str())];

    // No user: one clear error that says what to do.
    let home = home_for(&d, &format!("proxy = \"{}\"", proxy.url()), "");
    let (ok, _, err) = check(&tb, &home, &env);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "the proxy {}:{SQUID_PORT} wants a user name and password (407",
            tb.gateway_client_ip()
        )) && err.contains("mailpulse password set --proxy"),
        "{err}"
    );

    // A wrong password (here from HTTPS_PROXY): refused, and said so.
    let wrong = format!("http://pat:wrong@{}:{SQUID_PORT}", tb.gateway_client_ip());
    let (ok, _, err) = check(
        &tb,
        &home_for(&d, "proxy = \"system\"", ""),
        &[("HTTPS_PROXY", wrong.as_str())],
    );
    assert!(
        !ok && err.contains("refused the Basic sign-in of the user \"pat\" (407"),
        "{err}"
    );

    // The agent, with the user but no password stored: one error, and the proxy is not asked
    // again and again.
    let url = format!("http://pat@{}:{SQUID_PORT}", tb.gateway_client_ip());
    let home = home_for(&d, &format!("proxy = \"{url}\""), "interval_secs = 30");
    let before = proxy.count("TCP_DENIED/407");
    let w = tb.in_client(|| Watch::start_with(&home, &env));
    let events = w.until_type(secs(30), "error");
    let events = [events, w.during(secs(45))].concat();
    let errors = of_type(&events, "error");
    assert_eq!(errors.len(), 1, "one error, shown once: {events:?}");
    assert_eq!(errors[0]["kind"], "auth", "{errors:?}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("the keyring holds none for \"pat\""),
        "{errors:?}"
    );
    let asked = proxy.count("TCP_DENIED/407") - before;
    assert!(
        asked <= 3,
        "the proxy was asked {asked} times in 75 s:\n{}",
        proxy.access_log()
    );

    // The password stored: the running agent is told and goes through at once.
    let mut set = home.command(&["password", "set", "--proxy"]);
    set.envs(env).stdin(std::process::Stdio::piped());
    let mut child = set.spawn().expect("mailpulse password set --proxy");
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "proxy pässword").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let (ok, out, err) = check(&tb, &home, &env);
    assert!(ok, "{out}\n{err}");
    w.signal("USR1");
    w.until_type(secs(40), "connected");
    d.deliver(USER, "Bob <bob@example.org>", "authenticated", "hello");
    let seen = w.until(secs(20), |v| v["type"] == "new_mail");
    assert_eq!(subjects(&seen), ["authenticated"]);
    assert!(
        proxy.access_log().contains(" pat "),
        "{}",
        proxy.access_log()
    );
    // The password is nowhere in the agent's output.
    assert!(!w.stderr_text().contains("pässword") && !w.stdout_text().contains("pässword"));
}

#[test]
fn a_proxy_that_wants_ntlm_is_answered_on_the_connection_it_authenticates() {
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(
        &tb,
        SquidOptions {
            ntlm: Some(("CORP".into(), "pat".into(), "proxy-pw".into())),
            ..SquidOptions::default()
        },
    );

    // No user: one error that says which user to write, and how for a Windows domain.
    let home = home_for(&d, &format!("proxy = \"{}\"", proxy.url()), "");
    let (ok, _, err) = check(&tb, &home, &[]);
    assert!(!ok);
    assert!(
        err.contains("wants a user name and password (407") && err.contains("DOMAIN%5CUSER@"),
        "{err}"
    );

    // A wrong password: Samba's check refuses it, and the error says so.
    let home = home_for(&d, "proxy = \"system\"", "interval_secs = 30");
    let wrong = format!(
        "http://CORP%5Cpat:wrong@{}:{SQUID_PORT}",
        tb.gateway_client_ip()
    );
    let (ok, _, err) = check(&tb, &home, &[("HTTPS_PROXY", wrong.as_str())]);
    assert!(
        !ok && err.contains("refused the NTLM sign-in of the user \"CORP\\\\pat\" (407"),
        "{err}"
    );

    // The domain user and password from HTTPS_PROXY (as curl takes them): the NTLM exchange
    // runs, the tunnel opens, and mail comes through it.
    let url = format!(
        "http://CORP%5Cpat:proxy-pw@{}:{SQUID_PORT}",
        tb.gateway_client_ip()
    );
    let env = [("HTTPS_PROXY", url.as_str())];
    let (ok, out, err) = check(&tb, &home, &env);
    assert!(ok, "{out}\n{err}\n{}", proxy.access_log());
    let w = tb.in_client(|| Watch::start_with(&home, &env));
    connected(&w);
    d.deliver(USER, "Bob <bob@example.org>", "through NTLM", "hello");
    let seen = w.until(secs(20), |v| v["type"] == "new_mail");
    assert_eq!(subjects(&seen), ["through NTLM"]);
    // Squid names the user Samba signed in.
    let log = proxy.access_log();
    let tunnels: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONNECT") && !l.contains("TCP_DENIED"))
        .collect();
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|l| l.contains("pat")),
        "{log}"
    );
    assert!(!w.stderr_text().contains("proxy-pw") && !w.stdout_text().contains("proxy-pw"));
}

/// A proxy in a Windows domain often offers only Negotiate: without Kerberos, NTLM goes inside
/// it (as browsers do), checked by the same Samba behind Squid's negotiate wrapper.
#[test]
fn a_proxy_that_offers_only_negotiate_gets_ntlm_inside_it() {
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(
        &tb,
        SquidOptions {
            ntlm: Some(("CORP".into(), "pat".into(), "proxy-pw".into())),
            negotiate: true,
            ..SquidOptions::default()
        },
    );
    let home = home_for(&d, "proxy = \"system\"", "");
    let through = |password: &str| {
        let url = format!(
            "http://CORP%5Cpat:{password}@{}:{SQUID_PORT}",
            tb.gateway_client_ip()
        );
        check(&tb, &home, &[("HTTPS_PROXY", url.as_str())])
    };
    let (ok, _, err) = through("wrong");
    assert!(
        !ok && err.contains("refused the Negotiate sign-in of the user \"CORP\\\\pat\" (407"),
        "{err}\n{}",
        proxy.access_log()
    );
    let (ok, out, err) = through("proxy-pw");
    assert!(
        ok && out.contains("old one"),
        "{out}\n{err}\n{}",
        proxy.access_log()
    );
    let log = proxy.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains("TCP_TUNNEL/200") && l.contains("CORP\\\\pat")),
        "{log}"
    );
}

#[test]
fn a_proxy_that_refuses_the_port_says_so() {
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(
        &tb,
        SquidOptions {
            only_443: true,
            ..SquidOptions::default()
        },
    );
    let home = home_for(&d, &format!("proxy = \"{}\"", proxy.url()), "");
    let (ok, _, err) = check(&tb, &home, &[]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "the proxy {}:{SQUID_PORT} refused the tunnel to {NETNS_SERVER_NAME}:{} (403",
            tb.gateway_client_ip(),
            netns::SERVER_PORT
        )) && err.contains("only allow port 443"),
        "{err}"
    );
}

#[test]
fn the_proxy_going_away_mid_session_reconnects_and_catches_up_once() {
    let d = dovecot();
    let tb = testbed(&d);
    let mut proxy = squid(&tb, SquidOptions::default());
    let home = home_for(
        &d,
        &format!("proxy = \"{}\"", proxy.url()),
        "interval_secs = 30",
    );
    let w = tb.in_client(|| Watch::start(&home));
    connected(&w);
    proxy.kill();
    d.deliver(
        USER,
        "Bob <bob@example.org>",
        "while the proxy was away",
        "x",
    );
    let mut log = w.until_type(secs(40), "error");
    log.extend(w.during(secs(5)));
    proxy.start_again();
    log.extend(w.until(secs(90), |v| v["type"] == "new_mail"));
    log.extend(w.during(secs(5)));
    assert_eq!(subjects(&log), ["while the proxy was away"], "{log:?}");
    let errors = of_type(&log, "error");
    assert!(
        errors.iter().any(
            |e| e["message"].as_str().unwrap_or_default().contains(&format!(
                "the proxy {}:{SQUID_PORT}",
                tb.gateway_client_ip()
            ))
        ),
        "an error names the proxy: {errors:?}"
    );
}

#[test]
fn socks5_through_dante() {
    let d = dovecot();
    let tb = testbed(&d);
    let gw = tb.gateway_ns().to_owned();
    let dante = Dante::start(&gw, &tb.gateway_client_ip(), SOCKS_PORT, "gs", &|p| {
        tb.gateway_cmd(p)
    });
    // socks5: the name resolved here (`ip netns exec` gives the client namespace a hosts file
    // that knows it), the address sent to the proxy.
    tb.resolve_server_name(NETNS_SERVER_NAME);
    let home = home_for(&d, &format!("proxy = \"{}\"", dante.url("socks5")), "");
    let mine = home.command(&["check"]);
    let mut c = tb.client_cmd(support::agent::BIN);
    c.args(mine.get_args());
    for (k, v) in mine.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = output_within(c, secs(60));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", dante.log());
    assert!(stdout.contains("subject=\"old one\""), "{stdout}");
    // socks5h: the proxy resolves the name (the agent's thread in the client namespace has no
    // hosts file that knows it); the agent gets new mail through it.
    let home = home_for(&d, &format!("proxy = \"{}\"", dante.url("socks5h")), "");
    let w = tb.in_client(|| Watch::start(&home));
    connected(&w);
    d.deliver(USER, "Bob <bob@example.org>", "over socks", "hello");
    let seen = w.until(secs(20), |v| v["type"] == "new_mail");
    assert_eq!(subjects(&seen), ["over socks"]);
    assert!(
        dante.log().contains("pass(1): tcp/connect"),
        "{}",
        dante.log()
    );
}

#[test]
fn system_takes_the_environment_then_the_desktop_settings() {
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(&tb, SquidOptions::default());
    let home = home_for(&d, "proxy = \"system\"", "");
    let url = proxy.url();

    // HTTPS_PROXY, as a shell in a company network has it.
    let (ok, out, err) = check(&tb, &home, &[("HTTPS_PROXY", &url)]);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains(&format!("through {url} (from HTTPS_PROXY)")),
        "{err}"
    );

    // NO_PROXY names the server: straight there, which the firewall drops.
    let (ok, _, err) = check(
        &tb,
        &home,
        &[("HTTPS_PROXY", &url), ("NO_PROXY", ".mailpulse.test")],
    );
    assert!(!ok && err.contains("is in NO_PROXY"), "{err}");

    // GNOME's proxy settings (through gsettings' keyfile backend in a private config dir).
    let gsettings = tempfile::tempdir().unwrap();
    let gs = |args: &[&str]| {
        let st = std::process::Command::new("gsettings")
            .args(args)
            .env("GSETTINGS_BACKEND", "keyfile")
            .env("XDG_CONFIG_HOME", gsettings.path())
            .status()
            .expect("gsettings (libglib2.0-bin)");
        assert!(st.success(), "gsettings {args:?}");
    };
    gs(&["set", "org.gnome.system.proxy", "mode", "manual"]);
    gs(&[
        "set",
        "org.gnome.system.proxy.https",
        "host",
        &tb.gateway_client_ip(),
    ]);
    gs(&[
        "set",
        "org.gnome.system.proxy.https",
        "port",
        &SQUID_PORT.to_string(),
    ]);
    let cfg = gsettings.path().to_str().unwrap();
    let desktop = [
        ("XDG_CURRENT_DESKTOP", "GNOME"),
        ("GSETTINGS_BACKEND", "keyfile"),
        ("XDG_CONFIG_HOME", cfg),
    ];
    let (ok, out, err) = check(&tb, &home, &desktop);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "through {url} (from the desktop's proxy settings (GNOME))"
        )),
        "{err}"
    );

    // "Automatic" with a PAC script: the script sends the mail domain through Squid.
    let pac = gsettings.path().join("proxy.pac");
    std::fs::write(
        &pac,
        format!(
            "function FindProxyForURL(url, host) {{\n\
               if (isPlainHostName(host)) return \"DIRECT\";\n\
               if (dnsDomainIs(host, \".mailpulse.test\")) return \"PROXY {}:{SQUID_PORT}; DIRECT\";\n\
               return \"DIRECT\";\n\
             }}\n",
            tb.gateway_client_ip()
        ),
    )
    .unwrap();
    let pac_url = format!("file://{}", pac.display());
    gs(&["set", "org.gnome.system.proxy", "mode", "auto"]);
    gs(&["set", "org.gnome.system.proxy", "autoconfig-url", &pac_url]);
    let (ok, out, err) = check(&tb, &home, &desktop);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "through {url} (from the desktop's proxy settings (GNOME), PAC script {pac_url})"
        )),
        "{err}"
    );

    // KDE's settings (kioslaverc), manual and then the same PAC script.
    let kde = tempfile::tempdir().unwrap();
    let kioslaverc = |body: String| {
        std::fs::write(
            kde.path().join("kioslaverc"),
            format!("[Proxy Settings]\nNoProxyFor=localhost\n{body}"),
        )
        .unwrap()
    };
    let kde_env = [
        ("XDG_CURRENT_DESKTOP", "KDE"),
        ("XDG_CONFIG_HOME", kde.path().to_str().unwrap()),
    ];
    kioslaverc(format!(
        "ProxyType=1\nhttpsProxy=http://{} {SQUID_PORT}\n",
        tb.gateway_client_ip()
    ));
    let (ok, out, err) = check(&tb, &home, &kde_env);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "through {url} (from the desktop's proxy settings (KDE))"
        )),
        "{err}"
    );
    kioslaverc(format!("ProxyType=2\nProxy Config Script={pac_url}\n"));
    let (ok, out, err) = check(&tb, &home, &kde_env);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "through {url} (from the desktop's proxy settings (KDE), PAC script {pac_url})"
        )),
        "{err}"
    );
    // The exception list names the server: straight there, which the firewall drops.
    kioslaverc(format!(
        "ProxyType=1\nNoProxyFor=.mailpulse.test\nhttpsProxy=http://{} {SQUID_PORT}\n",
        tb.gateway_client_ip()
    ));
    let (ok, _, err) = check(&tb, &home, &kde_env);
    assert!(!ok, "{err}");
}

/// EWS and Graph through a Squid on this machine: the test servers' traffic goes through the
/// tunnel (Squid's log), and everything works as without it.
#[test]
fn ews_and_graph_go_through_the_proxy() {
    use support::ews_server::{EwsServer, Options};
    use support::graph_server::GraphServer;
    let port = support::dovecot::free_port();
    let proxy = Squid::start(
        "127.0.0.1",
        port,
        SquidOptions {
            hosts: vec![("127.0.0.1".into(), "localhost".into())],
            ..SquidOptions::default()
        },
        None,
    );

    let opts = Options::default();
    let (ews_user, ews_password) = (opts.user.clone(), opts.password.clone());
    let ews = EwsServer::start(opts);
    ews.deliver("Via the proxy", "Bob", "bob@example.com");
    // `check` prints `subject`, and Squid's log shows the tunnel to the server at `url`.
    let check_tunnelled = |home: &Home, url: &str, subject: &str| {
        let out = home.run(&["check"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains(subject), "{stdout}");
        let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
        let log = proxy.access_log();
        assert!(log.contains(&format!("CONNECT localhost:{port}")), "{log}");
    };
    let home = Home::new();
    let pw = home.password_file(&ews_password);
    home.write_config(&format!(
        "[network]\nproxy = \"{}\"\n\n[[accounts]]\nname = \"work\"\nprotocol = \"ews\"\nurl = \"{}\"\n\
         username = \"{}\"\npassword_command = \"cat '{}'\"\nca_file = \"{}\"\n",
        proxy.url(),
        ews.url(),
        ews_user,
        pw.display(),
        ews.ca_pem().display()
    ));
    check_tunnelled(&home, &ews.url(), "Via the proxy");

    const TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.proxy-token";
    let graph = GraphServer::start("alice@contoso.com", TOKEN);
    graph.deliver("inbox", "Graph via the proxy", "Carol", "carol@example.com");
    let home = Home::new();
    let token = home.password_file(TOKEN);
    home.write_config(&format!(
        "[[accounts]]\nname = \"m365\"\nprotocol = \"graph\"\nurl = \"{}\"\nusername = \"alice@contoso.com\"\n\
         auth = \"bearer\"\npassword_command = \"cat '{}'\"\nca_file = \"{}\"\nproxy = \"{}\"\n",
        graph.url(),
        token.display(),
        graph.ca_pem().display(),
        proxy.url(),
    ));
    check_tunnelled(&home, &graph.url(), "Graph via the proxy");
    assert_eq!(graph.writes(), 0);
}

/// A proxy that closes idle tunnels is learned like a NAT that forgets idle flows: `mailpulse
/// probe` through a Squid whose tunnels end after 45 s of silence brackets 45 s.
#[test]
fn probe_learns_how_long_the_proxy_keeps_an_idle_tunnel() {
    let d = dovecot();
    let tb = testbed(&d);
    let proxy = squid(
        &tb,
        SquidOptions {
            idle_timeout_secs: Some(45),
            ..SquidOptions::default()
        },
    );
    let home = home_for(&d, &format!("proxy = \"{}\"", proxy.url()), "");
    let out = tb.in_client(|| {
        output_within(
            home.command(&["probe", "--account", "work", "--max", "90"]),
            secs(8 * 60),
        )
    });
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let sentence = stdout.trim();
    let numbers: Vec<u64> = sentence
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        sentence.starts_with("This network forgets idle connections after between")
            && numbers.len() >= 2
            && numbers[0] < 45
            && numbers[1] >= 45
            && numbers[1] <= 50,
        "{sentence}\n{stderr}"
    );
}
