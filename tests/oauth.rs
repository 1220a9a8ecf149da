//! OAuth2 end to end: the real binary, a real Dovecot that validates bearer tokens through its
//! `oauth2` passdb (XOAUTH2 and OAUTHBEARER), the test identity provider of
//! `tests/support/idp.rs`, and a real gnome-keyring on a private bus for the refresh token.
//!
//! The browser is played by the test: `mailpulse signin --no-browser` prints the authorization
//! URL, the test GETs it and follows the redirect to the agent's loopback listener.
#![cfg(target_os = "linux")]

#[path = "support/netns.rs"]
mod netns;
#[path = "support/proxies.rs"]
mod proxies;
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::agent::{Home, Watch, of_type, secs, subjects};
use support::dovecot::{Dovecot, DovecotOptions};
use support::idp::{Idp, browse};
use support::keyring::Daemons;

const USER: &str = "alice";
const CLIENT_ID: &str = "mailpulse-test-client";

fn dovecot(idp: &Idp) -> Dovecot {
    Dovecot::start(DovecotOptions {
        oauth2_introspection_url: Some(idp.url("/introspect")),
        ..DovecotOptions::default()
    })
}

/// A config with one account `work` over verified TLS, `auth` as given, and `tail` appended to
/// the account (e.g. its `[accounts.oauth]` table).
fn config(d: &Dovecot, auth: &str, account_keys: &str, tail: &str) -> String {
    format!(
        "[keepalive]\ncheck_on_wake = false\n\n[logging]\nenabled = true\nlevel = \"trace\"\n\n\
         [[accounts]]\nname = \"work\"\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\n\
         ca_file = \"{}\"\nusername = \"{USER}\"\nauth = \"{auth}\"\n{account_keys}\n{tail}",
        d.imaps_port(),
        d.ca_pem().display()
    )
}

fn oauth_table(idp: &Idp, client_id: &str) -> String {
    format!(
        "[accounts.oauth]\nprovider = \"generic\"\nclient_id = \"{client_id}\"\n\
         authorization_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"imap\", \"offline_access\"]\n",
        idp.url("/authorize"),
        idp.url("/token")
    )
}

/// What `mailpulse signin` did, and the page the browser showed.
struct SignIn {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    page: String,
}

/// `mailpulse signin --account work --no-browser`, with the test as the browser.
fn sign_in(home: &Home, bus: Option<&str>) -> SignIn {
    let mut cmd = home.command(&["signin", "--account", "work", "--no-browser"]);
    if let Some(bus) = bus {
        cmd.env("DBUS_SESSION_BUS_ADDRESS", bus);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailpulse signin");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let deadline = Instant::now() + secs(30);
    let url = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                out.push(line.clone());
                if line.trim_start().starts_with("http://") {
                    break line.trim().to_owned();
                }
            }
            Err(_) => {
                let (_, _, err) = finish(child);
                panic!("signin printed no URL: {}\n{err}", out.join("\n"));
            }
        }
    };
    let (status, page) = browse(&url);
    assert!(
        status == 200 || status == 400,
        "page status {status}: {page}"
    );
    let (success, code, stderr) = finish(child);
    out.extend(rx.try_iter());
    SignIn {
        success,
        code,
        stdout: out.join("\n"),
        stderr,
        page,
    }
}

/// Wait (bounded) for the process to exit; killed by PID after 60 s.
fn finish(mut child: Child) -> (bool, Option<i32>, String) {
    let deadline = Instant::now() + secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.success(), status.code(), err)
}

/// Everything the agent wrote: its log files.
fn logs(home: &Home) -> String {
    let mut text = String::new();
    if let Ok(dir) = std::fs::read_dir(home.log_dir()) {
        for f in dir.flatten() {
            text += &std::fs::read_to_string(f.path()).unwrap_or_default();
        }
    }
    text
}

/// Successful logins with this SASL mechanism, from Dovecot's log (imap-login's `Login:` lines;
/// the rawlog cannot see inside TLS before login).
fn logins(d: &Dovecot, mechanism: &str) -> usize {
    let method = format!("method={mechanism},");
    d.log()
        .lines()
        .filter(|l| l.contains("imap-login: ") && l.contains(" Login: ") && l.contains(&method))
        .count()
}

fn assert_no_secret(idp: &Idp, what: &str, text: &str) {
    for s in idp.secrets() {
        assert!(
            !s.is_empty() && !text.contains(&s),
            "{what} contains a token, code or verifier"
        );
    }
}

#[test]
fn sign_in_then_idle_survives_token_expiry_and_reconnects_with_a_refreshed_token() {
    let keyring = Daemons::with_keyring();
    let bus = keyring.bus_address.clone();
    let idp = Idp::start(CLIENT_ID);
    // Short-lived access tokens: each expires while the IDLE session is open.
    idp.set_lifetime(8);
    let mut d = dovecot(&idp);
    let home = Home::new();
    home.write_config(&config(&d, "xoauth2", "", &oauth_table(&idp, CLIENT_ID)));

    let s = sign_in(&home, Some(&bus));
    assert!(s.success, "signin failed:\n{}\n{}", s.stdout, s.stderr);
    assert!(
        s.stdout.contains("Signed in: account \"work\""),
        "{}",
        s.stdout
    );
    assert!(s.stdout.contains("keyring"), "{}", s.stdout);
    assert!(s.page.contains("Signed in"), "{}", s.page);
    assert_eq!(idp.code_grants(), 1);
    // The refresh token is in the keyring (its own entry, beside the password's).
    assert_eq!(
        keyring.search_items(&[
            ("service", "mailpulse"),
            ("username", "oauth2:alice@localhost")
        ]),
        1
    );

    let mut w = Watch::start_with(&home, &[("DBUS_SESSION_BUS_ADDRESS", &bus)]);
    w.until_type(secs(30), "connected");
    assert_eq!(idp.refresh_grants(), 1, "one refresh for the first connect");
    // Let the access token expire under the open IDLE session: mail still arrives over it.
    thread::sleep(secs(10));
    d.deliver(USER, "Ann <ann@example.org>", "after expiry", "1");
    let seen = w.until_type(secs(30), "new_mail");
    assert_eq!(subjects(&seen), ["after expiry"]);

    // The server restarts: the agent reconnects with a refreshed token, no auth error.
    d.restart();
    let seen = w.until_type(secs(60), "connected");
    assert!(
        of_type(&seen, "error").iter().all(|e| e["kind"] != "auth"),
        "{seen:?}"
    );
    assert_eq!(idp.refresh_grants(), 2, "refreshed on reconnect");
    d.deliver(USER, "Bob <bob@example.org>", "after reconnect", "2");
    let seen = w.until_type(secs(30), "new_mail");
    assert_eq!(subjects(&seen), ["after reconnect"]);
    assert_eq!(logins(&d, "XOAUTH2"), 2, "{}", d.log());
    assert!(w.stop(), "watch exits cleanly");

    // No token, code or verifier anywhere: stdout, stderr, the trace-level log file.
    assert_no_secret(&idp, "signin stdout", &s.stdout);
    assert_no_secret(&idp, "signin stderr", &s.stderr);
    assert_no_secret(&idp, "watch stdout", &w.stdout_text());
    assert_no_secret(&idp, "watch stderr", &w.stderr_text());
    let log = logs(&home);
    assert!(
        log.contains("access token refreshed"),
        "trace log written: {log}"
    );
    assert_no_secret(&idp, "the log file", &log);

    // Signing out removes the keyring entry.
    let out = home
        .command(&["signout", "--account", "work"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Signed out"));
    assert_eq!(
        keyring.search_items(&[
            ("service", "mailpulse"),
            ("username", "oauth2:alice@localhost")
        ]),
        0
    );
}

/// Behind a proxy the token endpoint is reached through it too: the code exchange of the
/// sign-in and the refresh before each login go through Squid (its log shows their tunnels), and
/// so does the IMAP session.
#[test]
fn sign_in_and_token_refresh_go_through_the_proxy() {
    through_the_proxy(proxies::SquidOptions::default(), None);
}

/// The same behind a proxy that wants NTLM (checked by Samba's `ntlm_auth`): the token
/// requests are signed in to the proxy like the mail connection, with the stored password.
#[test]
fn token_requests_sign_in_to_a_proxy_that_wants_ntlm() {
    through_the_proxy(
        proxies::SquidOptions {
            ntlm: Some(("CORP".into(), "pat".into(), "proxy-pw".into())),
            ..proxies::SquidOptions::default()
        },
        Some(("CORP%5Cpat", "proxy-pw")),
    );
}

/// Sign in, then `check`, through a Squid with `options` on loopback (the proxy user, as
/// written in the URL, and its password when it wants one).
fn through_the_proxy(options: proxies::SquidOptions, user: Option<(&str, &str)>) {
    let keyring = Daemons::with_keyring();
    let bus = keyring.bus_address.clone();
    let idp = Idp::start(CLIENT_ID);
    let d = dovecot(&idp);
    d.deliver(USER, "Ann <ann@example.org>", "via the proxy", "1");
    let squid = proxies::Squid::start(
        "127.0.0.1",
        support::dovecot::free_port(),
        proxies::SquidOptions {
            hosts: vec![("127.0.0.1".into(), "localhost".into())],
            ..options
        },
        None,
    );
    let url = match user {
        Some((name, _)) => format!("http://{name}@127.0.0.1:{}", squid.port),
        None => squid.url(),
    };
    let home = Home::new();
    home.write_config(&format!(
        "[network]\nproxy = \"{url}\"\n\n{}",
        config(&d, "xoauth2", "", &oauth_table(&idp, CLIENT_ID))
    ));
    if let Some((_, password)) = user {
        let mut set = home.command(&["password", "set", "--proxy"]);
        set.env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .stdin(std::process::Stdio::piped());
        let mut child = set.spawn().expect("mailpulse password set --proxy");
        {
            use std::io::Write;
            writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        }
        assert!(child.wait().unwrap().success());
    }
    let s = sign_in(&home, Some(&bus));
    assert!(
        s.success,
        "signin failed:\n{}\n{}\n{}",
        s.stdout,
        s.stderr,
        squid.access_log()
    );
    let mut check = home.command(&["check"]);
    check.env("DBUS_SESSION_BUS_ADDRESS", &bus);
    let out = support::agent::output_within(check, secs(60));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("via the proxy"), "{stdout}");
    assert_eq!(idp.code_grants(), 1);
    assert_eq!(idp.refresh_grants(), 1);
    let log = squid.access_log();
    // Plain http is tunnelled too: one CONNECT to the identity provider per token request.
    let idp_host = idp.url("").trim_start_matches("http://").to_owned();
    let tunnels: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("CONNECT {idp_host} ")) && !l.contains("TCP_DENIED"))
        .collect();
    assert_eq!(
        tunnels.len(),
        2,
        "the code exchange and the refresh through the proxy:\n{log}"
    );
    if user.is_some() {
        assert!(tunnels.iter().all(|l| l.contains("CORP\\\\pat")), "{log}");
    }
    assert!(
        log.contains(&format!("CONNECT localhost:{}", d.imaps_port())),
        "{log}"
    );
}

#[test]
fn a_refused_token_is_renewed_and_retried_once_with_oauthbearer() {
    let keyring = Daemons::with_keyring();
    let bus = keyring.bus_address.clone();
    let idp = Idp::start(CLIENT_ID);
    let mut d = dovecot(&idp);
    let home = Home::new();
    // Two folders, two connections, one account: they share the access token.
    d.doveadm(&["mailbox", "create", "-u", USER, "Lists"]);
    home.write_config(&config(
        &d,
        "oauthbearer",
        "folders = [\"INBOX\", \"Lists\"]",
        &oauth_table(&idp, CLIENT_ID),
    ));
    let s = sign_in(&home, Some(&bus));
    assert!(s.success, "{}\n{}", s.stdout, s.stderr);

    let w = Watch::start_with(&home, &[("DBUS_SESSION_BUS_ADDRESS", &bus)]);
    let connected = |limit| {
        let folders = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let seen = w.until(limit, |v| {
            let mut folders = folders.borrow_mut();
            if v["type"] == "connected" {
                folders.insert(v["folder"].as_str().unwrap_or_default().to_owned());
            }
            folders.len() == 2
        });
        assert!(
            of_type(&seen, "error").iter().all(|e| e["kind"] != "auth"),
            "{seen:?}"
        );
    };
    connected(secs(30));
    assert_eq!(idp.refresh_grants(), 1, "one token for both folders");
    assert_eq!(idp.introspections(), (2, 2));
    // The provider drops its access tokens (the refresh token stays good), the connections
    // drop: the cached token, still valid by its clock, is refused, renewed once for both
    // folders, and retried on the same connection.
    idp.revoke_access_tokens();
    d.restart();
    connected(secs(60));
    assert_eq!(idp.refresh_grants(), 2, "renewed once, not once per folder");
    let (all, active) = idp.introspections();
    assert!(
        (1..=2).contains(&(all - active)) && active == 4,
        "the cached token was tried and refused first: {all} introspections, {active} active"
    );
    assert_eq!(logins(&d, "OAUTHBEARER"), 4, "{}", d.log());
}

#[test]
fn a_revoked_sign_in_is_reported_once_and_asks_to_sign_in_again() {
    let keyring = Daemons::with_keyring();
    let bus = keyring.bus_address.clone();
    let idp = Idp::start(CLIENT_ID);
    let d = dovecot(&idp);
    let home = Home::new();
    home.write_config(&config(&d, "xoauth2", "", &oauth_table(&idp, CLIENT_ID)));
    // Not signed in yet: said in words, with what to run.
    let out = home
        .command(&["check"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("account \"work\" is not signed in: run `mailpulse signin --account work`"),
        "{stderr}"
    );
    let s = sign_in(&home, Some(&bus));
    assert!(s.success, "{}\n{}", s.stdout, s.stderr);
    idp.revoke_all();

    let w = Watch::start_with(&home, &[("DBUS_SESSION_BUS_ADDRESS", &bus)]);
    let seen = w.until_type(secs(30), "error");
    let error = seen.last().unwrap();
    assert_eq!(error["kind"], "auth", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("expired or was revoked")
            && message.contains("mailpulse signin --account work"),
        "{message}"
    );
    // "Check now" with the same (revoked) sign-in asks nobody: a rejected credential is not
    // tried again for 10 minutes, whatever asks.
    w.signal("USR1");
    let later = w.during(secs(3));
    assert!(
        of_type(&later, "error").is_empty(),
        "reported once: {later:?}"
    );
    assert_eq!(idp.refresh_grants(), 1, "no retry with the revoked sign-in");
    assert_eq!(idp.introspections().1, 0, "no token reached the server");
    // Signed in again: the next "Check now" sees the new refresh token and logs in at once.
    let s = sign_in(&home, Some(&bus));
    assert!(s.success, "{}\n{}", s.stdout, s.stderr);
    w.signal("USR1");
    let back = w.until_type(secs(30), "connected");
    assert!(of_type(&back, "error").is_empty(), "{back:?}");
}

#[test]
fn consent_denied_and_a_wrong_client_id_are_told_in_words() {
    let idp = Idp::start(CLIENT_ID);
    let home = Home::new();
    // No server is needed: the sign-in fails before anything is stored.
    let cfg = |client: &str| {
        format!(
            "[[accounts]]\nname = \"work\"\nhost = \"localhost\"\nusername = \"{USER}\"\n\
             auth = \"xoauth2\"\n{}",
            oauth_table(&idp, client)
        )
    };

    idp.set_deny(true);
    home.write_config(&cfg(CLIENT_ID));
    let s = sign_in(&home, None);
    assert!(
        !s.success && s.code == Some(3),
        "{}\n{}",
        s.stdout,
        s.stderr
    );
    assert!(
        s.stderr
            .contains("access was denied in the browser (access_denied)"),
        "{}",
        s.stderr
    );
    assert!(s.page.contains("access was denied"), "{}", s.page);

    idp.set_deny(false);
    home.write_config(&cfg("not-the-client"));
    let s = sign_in(&home, None);
    assert!(
        !s.success && s.code == Some(3),
        "{}\n{}",
        s.stdout,
        s.stderr
    );
    assert!(
        s.stderr
            .contains("does not accept client id \"not-the-client\" (invalid_client)"),
        "{}",
        s.stderr
    );
    assert_no_secret(&idp, "signin output", &format!("{}{}", s.stdout, s.stderr));
}

#[test]
fn password_command_tokens_work_with_xoauth2_and_oauthbearer() {
    let idp = Idp::start(CLIENT_ID);
    let d = dovecot(&idp);
    let home = Home::new();
    let token_file = home.path().join("token");
    for auth in ["xoauth2", "oauthbearer"] {
        std::fs::write(&token_file, idp.issue_access_token(USER)).unwrap();
        d.deliver(USER, "Ann <ann@example.org>", auth, "1");
        home.write_config(&config(
            &d,
            auth,
            &format!("password_command = \"cat '{}'\"", token_file.display()),
            "",
        ));
        let out = home.run(&["check"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{auth}: {stdout}\n{stderr}");
        assert!(stdout.contains(&format!("subject=\"{auth}\"")), "{stdout}");
        assert_no_secret(&idp, "check output", &format!("{stdout}{stderr}"));
    }
    assert_eq!(logins(&d, "XOAUTH2"), 1, "{}", d.log());
    assert_eq!(logins(&d, "OAUTHBEARER"), 1, "{}", d.log());

    // A token the provider does not know: refused (after one retry with the command run
    // again), an authentication error in words, exit code 3.
    std::fs::write(&token_file, "not-a-token").unwrap();
    let out = home.run(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("rejected the OAuth2 token of \"alice\""),
        "{stderr}"
    );
}

#[cfg(feature = "desktop")]
#[test]
fn the_settings_window_signs_in_with_its_button() {
    use support::desktop::Desktop;

    let keyring = Daemons::with_keyring();
    let idp = Idp::start(CLIENT_ID);
    let d = dovecot(&idp);
    let desktop = Desktop::start();
    let home = Home::new();
    // A password account; the page turns it into an OAuth2 one, as a user would.
    let pw = home.password_file("unused");
    home.write_config(&config(
        &d,
        "password",
        &format!("password_command = \"cat '{}'\"", pw.display()),
        "",
    ));
    // The desktop's opener (xdg-open) is a stand-in that records the address it was given; the
    // test then plays the browser.
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = home.path().join("opened.txt");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\necho \"$1\" >> '{}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = home.path().join("automation.js");
    support::desktop::settings_script(
        &script,
        &format!(
            r#"type("acct.auth", "xoauth2");
              type("acct.password_command", "");
              type("acct.oauth.provider", "generic");
              type("acct.oauth.client_id", "{CLIENT_ID}");
              type("acct.oauth.authorization_url", "{}");
              type("acct.oauth.token_url", "{}");
              type("acct.oauth.scopes", "imap offline_access");
              $("sign-in").click();
              when(() => $("signin-result").classList.contains("ok"), () => {{
                $("signin-result").scrollIntoView();
                setTimeout(() => $("ok").click(), 4000);
              }});"#,
            idp.url("/authorize"),
            idp.url("/token")
        ),
    );
    let mut cmd = home.command(&["settings"]);
    desktop.apply(&mut cmd);
    let run = home.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = home.path().join("settings.log");
    let child = cmd
        .env("DBUS_SESSION_BUS_ADDRESS", &keyring.bus_address)
        .env("XDG_RUNTIME_DIR", &run)
        .env("PATH", path)
        .env("MAILPULSE_SETTINGS_SCRIPT", &script)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mailpulse settings");
    let settings_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The button opened the browser on the authorization address.
    let deadline = Instant::now() + secs(60);
    let url = loop {
        if let Some(line) = std::fs::read_to_string(&opened)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
        {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "the sign-in button opened no browser; settings log:\n{}",
            settings_log()
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert!(url.starts_with(&idp.url("/authorize?")), "{url}");
    let (status, page) = browse(&url);
    assert_eq!(status, 200, "{page}");
    thread::sleep(secs(2));
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts/settings-signed-in.png");
    desktop.screenshot(&shot);

    // The page showed the result and pressed OK: the window closes, the account is saved.
    let (ok, _, _) = finish(child);
    assert!(ok, "settings exited with an error:\n{}", settings_log());
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(text.contains("auth = \"xoauth2\""), "{text}");
    assert!(
        text.contains(&format!("client_id = \"{CLIENT_ID}\"")),
        "{text}"
    );
    assert_eq!(
        keyring.search_items(&[
            ("service", "mailpulse"),
            ("username", "oauth2:alice@localhost")
        ]),
        1
    );
    assert_no_secret(&idp, "the settings log", &settings_log());

    // And the saved account works.
    let out = home
        .command(&["check"])
        .env("DBUS_SESSION_BUS_ADDRESS", &keyring.bus_address)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(logins(&d, "XOAUTH2"), 1, "{}", d.log());
}
