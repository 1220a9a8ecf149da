use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/x/config.toml"))
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const ACCOUNT: &str =
    "[[accounts]]\nname = \"work\"\nhost = \"imap.example.com\"\nusername = \"alice\"\n";

#[test]
fn example_config_is_valid_and_documented() {
    let c = parse(EXAMPLE).expect("the shipped example parses");
    assert!(c.keepalive.enabled);
    assert_eq!(c.keepalive.interval_secs, 60);
    assert_eq!(c.accounts.len(), 1);
    assert_eq!(c.accounts[0].effective_port(), 993);
    // Every key of the contract appears in the example, so users can discover it.
    for key in [
        "enabled",
        "interval_secs",
        "response_timeout_secs",
        "adaptive",
        "level",
        "show_errors",
        "name",
        "protocol",
        "host",
        "port",
        "security",
        "username",
        "password_command",
        "folders",
        "ca_file",
        "on_new_mail",
        "auth",
        "[accounts.oauth]",
        "provider",
        "client_id",
        "client_secret_command",
        "tenant",
        "authorization_url",
        "token_url",
        "scopes",
        "url",
        "\"ews\"",
        "\"ntlm\"",
        "\"bearer\"",
        "\"graph\"",
    ] {
        assert!(EXAMPLE.contains(key), "example lacks {key}");
    }
}

#[test]
fn adaptive_defaults_off_and_its_max_is_validated() {
    let c = parse(ACCOUNT).unwrap();
    assert!(!c.keepalive.adaptive);
    assert_eq!(c.keepalive.adaptive_max_secs, MAX_INTERVAL_SECS);
    let c = parse("[keepalive]\nadaptive = true\ninterval_secs = 30\nadaptive_max_secs = 90\n")
        .unwrap();
    assert!(c.keepalive.adaptive);
    assert_eq!(c.keepalive.adaptive_max(), Duration::from_secs(90));
    let e = err("[keepalive]\ninterval_secs = 60\nadaptive_max_secs = 40\n");
    assert!(
        e.contains("keepalive.adaptive_max_secs: must be between interval_secs (60) and 1740"),
        "{e}"
    );
    let e = err("[keepalive]\nadaptive_max_secs = 1800\n");
    assert!(e.contains("keepalive.adaptive_max_secs"), "{e}");
    // The hidden key stays out of saved files while it has its default.
    let text = toml::to_string(&parse(ACCOUNT).unwrap()).unwrap();
    assert!(
        text.contains("adaptive = false") && !text.contains("adaptive_max_secs"),
        "{text}"
    );
}

#[test]
fn defaults_apply() {
    let c = parse(ACCOUNT).unwrap();
    assert_eq!(c.keepalive, KeepAlive::default());
    assert_eq!(c.accounts[0].folders, vec!["INBOX"]);
    assert_eq!(c.accounts[0].security, Security::Tls);
    let mut a = c.accounts[0].clone();
    a.security = Security::Starttls;
    assert_eq!(a.effective_port(), 143);
}

#[test]
fn interval_below_minimum_names_line_and_key() {
    let e = err("[keepalive]\nenabled = true\ninterval_secs = 10\n");
    assert_eq!(
        e,
        "/etc/x/config.toml:3:17: keepalive.interval_secs: must be between 30 and 1740 seconds \
         (got 10); servers drop IDLE sessions after 30 minutes"
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = err("[keepalive]\ninterval_secs = 60\nintervall = 3\n");
    assert!(
        e.starts_with("/etc/x/config.toml:3:1: keepalive.intervall: unknown field `intervall`"),
        "{e}"
    );
}

#[test]
fn port_zero_and_unknown_security_name_their_account() {
    let e = err(&format!(
        "{ACCOUNT}\n[[accounts]]\nname = \"b\"\nhost = \"h\"\nusername = \"u\"\nport = 0\n"
    ));
    assert!(
        e.starts_with("/etc/x/config.toml:10:8: accounts[1].port: must be between 1 and 65535"),
        "{e}"
    );
    let e = err(&format!("{ACCOUNT}security = \"ssl\"\n"));
    assert!(
        e.starts_with("/etc/x/config.toml:5:12: accounts[0].security: unknown variant `ssl`"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_key() {
    let e = err("[keepalive]\ninterval_secs = \"sixty\"\n");
    assert!(
        e.starts_with("/etc/x/config.toml:2:17: keepalive.interval_secs: invalid type"),
        "{e}"
    );
}

#[test]
fn syntax_error_names_line() {
    let e = err("[keepalive\ninterval_secs = 60\n");
    assert!(e.starts_with("/etc/x/config.toml:1:"), "{e}");
}

#[test]
fn plaintext_password_is_refused_with_advice() {
    let e = err(&format!("{ACCOUNT}password = \"hunter2\"\n"));
    assert!(
        e.contains("accounts[0].password: passwords are never stored"),
        "{e}"
    );
    assert!(e.contains("password_command"), "{e}");
    assert!(
        !e.contains("hunter2"),
        "the secret itself must not be echoed: {e}"
    );
}

#[test]
fn duplicate_names_and_empty_folders_are_refused() {
    let e = err(&format!("{ACCOUNT}{ACCOUNT}"));
    assert!(e.contains("accounts[1].name: another account"), "{e}");
    let e = err(&format!("{ACCOUNT}folders = []\n"));
    assert!(
        e.contains("accounts[0].folders: name at least one folder"),
        "{e}"
    );
}

#[test]
fn save_is_atomic_0600_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/config.toml");
    let mut c = parse(ACCOUNT).unwrap();
    c.keepalive.interval_secs = 45;
    c.accounts[0].password_command = Some("pass show x".into());
    c.save_merged(&path).unwrap();
    let back = Config::load(&path).unwrap();
    assert_eq!(back, c);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // No temp files left behind (the edit lock's file stays beside it).
    let mut names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".config.toml.lock", "config.toml"]);
    // An invalid config is not written.
    c.keepalive.interval_secs = 5;
    assert!(c.save_merged(&path).is_err());
    assert_eq!(Config::load(&path).unwrap().keepalive.interval_secs, 45);
}

#[test]
fn edits_keep_comments_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, EXAMPLE).unwrap();
    let c = Config::edit_file(&path, |doc| {
        doc["keepalive"]["enabled"] = toml_edit::value(false)
    })
    .unwrap();
    assert!(!c.keepalive.enabled);
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# The \"Enable Firewall Keep-Alive\" switch."),
        "comments kept"
    );
    assert!(text.contains("enabled = false"));
    // An edit that does not validate leaves the file alone.
    let err = Config::edit_file(&path, |doc| {
        doc["keepalive"]["interval_secs"] = toml_edit::value(5)
    })
    .unwrap_err();
    assert!(err.to_string().contains("keepalive.interval_secs"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), text);

    let mut c = Config::load(&path).unwrap();
    c.keepalive.interval_secs = 45;
    c.accounts[0].host = "mail.example.net".into();
    c.accounts
        .push(Account::new("home", "imap.home.example", "bob"));
    c.save_merged(&path).unwrap();
    let back = Config::load(&path).unwrap();
    assert_eq!(back, c);
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# Seconds between keep-alive queries"),
        "comments of kept keys survive:\n{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn oauth_accounts_parse_and_round_trip() {
    let c = parse(&format!(
        "{ACCOUNT}auth = \"xoauth2\"\n[accounts.oauth]\nprovider = \"microsoft\"\n\
         client_id = \"abc\"\ntenant = \"organizations\"\n"
    ))
    .unwrap();
    let a = &c.accounts[0];
    assert_eq!(a.auth, AuthMethod::Xoauth2);
    let o = a.oauth.as_ref().unwrap();
    assert_eq!(o.provider, OAuthProvider::Microsoft);
    assert_eq!(o.client_id, "abc");
    assert_eq!(parse(&c.to_toml()).unwrap(), c);
    // A password account writes no auth key at all.
    assert!(!parse(ACCOUNT).unwrap().to_toml().contains("auth"));
    // password_command alone is a token source.
    let c = parse(&format!(
        "{ACCOUNT}auth = \"oauthbearer\"\npassword_command = \"oama access a@b\"\n"
    ))
    .unwrap();
    assert_eq!(c.accounts[0].auth, AuthMethod::Oauthbearer);
    // A generic provider with its endpoints (http only on loopback).
    parse(&format!(
        "{ACCOUNT}auth = \"oauthbearer\"\n[accounts.oauth]\nprovider = \"generic\"\n\
         client_id = \"x\"\nauthorization_url = \"http://127.0.0.1:8080/auth\"\n\
         token_url = \"https://idp.example/token\"\nscopes = [\"imap\"]\n"
    ))
    .unwrap();
}

#[test]
fn the_examples_oauth_block_works_when_uncommented() {
    let mut text = String::new();
    let mut in_oauth = false;
    for line in EXAMPLE.lines() {
        in_oauth |= line == "# [accounts.oauth]";
        let uncomment = line == "# auth = \"password\""
            || (in_oauth
                && !line.starts_with("# tenant")
                && (line == "# [accounts.oauth]" || line.contains(" = ")));
        let line = if uncomment { &line[2..] } else { line };
        text += &line.replace("auth = \"password\"", "auth = \"xoauth2\"");
        text.push('\n');
    }
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let o = c.accounts[0].oauth.as_ref().expect("the oauth table");
    assert_eq!(c.accounts[0].auth, AuthMethod::Xoauth2);
    assert_eq!(o.provider, OAuthProvider::Google);
    assert!(o.client_secret_command.is_some() && o.scopes.is_some());
}

#[test]
fn oauth_mistakes_name_line_and_key() {
    let e = err(&format!("{ACCOUNT}auth = \"xoauth2\"\n"));
    assert!(
        e.starts_with(
            "/etc/x/config.toml:5:8: accounts[0].auth: auth = \"xoauth2\" needs a token source"
        ),
        "{e}"
    );
    let e = err(&format!("{ACCOUNT}auth = \"kerberos\"\n"));
    assert!(
        e.contains(":5:8: accounts[0].auth: unknown variant `kerberos`"),
        "{e}"
    );
    let e = err(&format!("{ACCOUNT}[accounts.oauth]\nclient_id = \"x\"\n"));
    assert!(
        e.contains("accounts[0].oauth: OAuth2 settings need auth"),
        "{e}"
    );
    let head = format!("{ACCOUNT}auth = \"xoauth2\"\n[accounts.oauth]\n");
    let e = err(&format!("{head}client_id = \"\"\n"));
    assert!(
        e.contains(":7:13: accounts[0].oauth.client_id: must not be empty"),
        "{e}"
    );
    let e = err(&format!(
        "{head}client_id = \"x\"\nclient_secret = \"GOCSPX-s3cr3t\"\n"
    ));
    assert!(
        e.contains(":8:17: accounts[0].oauth.client_secret: secrets are never stored"),
        "{e}"
    );
    assert!(!e.contains("s3cr3t"), "the secret is not echoed: {e}");
    let e = err(&format!(
        "{head}client_id = \"x\"\nprovider = \"generic\"\n"
    ));
    assert!(
        e.contains("accounts[0].oauth.authorization_url: is required with provider = \"generic\""),
        "{e}"
    );
    let e = err(&format!(
        "{head}client_id = \"x\"\ntoken_url = \"http://idp.example/token\"\n"
    ));
    assert!(
        e.contains(":8:13: accounts[0].oauth.token_url: must start with https://"),
        "{e}"
    );
    let e = err(&format!("{head}client_id = \"x\"\ntenant = \"common\"\n"));
    assert!(
        e.contains("accounts[0].oauth.tenant: only used with provider = \"microsoft\""),
        "{e}"
    );
    let e = err(&format!("{head}client_id = \"x\"\nscopes = []\n"));
    assert!(
        e.contains("accounts[0].oauth.scopes: name at least one scope"),
        "{e}"
    );
    let e = err(&format!("{head}client_id = \"x\"\nprovidr = \"google\"\n"));
    assert!(
        e.contains(":8:1: accounts[0].oauth.providr: unknown field"),
        "{e}"
    );
}

#[test]
fn ews_accounts_take_url_or_host() {
    let c = parse(
        "[[accounts]]\nname = \"x\"\nprotocol = \"ews\"\nusername = \"a@example.com\"\n\
         url = \"https://mail.example.com:8443/EWS/Exchange.asmx\"\n",
    )
    .unwrap();
    let a = &c.accounts[0];
    assert_eq!(a.host, "mail.example.com", "host derived from url");
    assert_eq!(a.effective_port(), 8443);
    assert_eq!(parse(&c.to_toml()).unwrap(), c, "round trip");
    let c = parse(
        "[[accounts]]\nname = \"x\"\nprotocol = \"ews\"\nhost = \"ex.example\"\n\
         username = \"u\"\nauth = \"ntlm\"\n",
    )
    .unwrap();
    assert_eq!(
        c.accounts[0].ews_url(),
        "https://ex.example/EWS/Exchange.asmx"
    );
    assert_eq!(c.accounts[0].effective_port(), 443);
    assert_eq!(c.accounts[0].auth, AuthMethod::Ntlm);
}

#[test]
fn ews_mistakes_name_line_and_key() {
    const EWS: &str = "[[accounts]]\nname = \"x\"\nprotocol = \"ews\"\nusername = \"u\"\n";
    let e = err(EWS);
    assert!(
        e.contains("accounts[0].url: an EWS account needs url"),
        "{e}"
    );
    let e = err(&format!(
        "{EWS}url = \"http://mail.example.com/EWS/Exchange.asmx\"\n"
    ));
    assert!(
        e.contains(":5:7: accounts[0].url: must start with https://"),
        "{e}"
    );
    let e = err(&format!(
        "{EWS}host = \"h\"\nauth = \"xoauth2\"\npassword_command = \"x\"\n"
    ));
    assert!(
        e.contains(":6:8: accounts[0].auth: auth = \"xoauth2\" is an IMAP login"),
        "{e}"
    );
    let e = err(&format!("{EWS}host = \"h\"\nfolders = [\"Projects\"]\n"));
    assert!(
        e.contains("accounts[0].folders: \"Projects\" is not an Exchange well-known folder"),
        "{e}"
    );
    let e = err(&format!("{EWS}host = \"h\"\nauth = \"bearer\"\n"));
    assert!(
        e.contains("accounts[0].auth: auth = \"bearer\" needs a token source"),
        "{e}"
    );
    let e = err(&format!("{ACCOUNT}auth = \"ntlm\"\n"));
    assert!(
        e.contains("accounts[0].auth: auth = \"ntlm\" is for protocol = \"ews\""),
        "{e}"
    );
    let e = err(&format!("{ACCOUNT}url = \"https://x/EWS/Exchange.asmx\"\n"));
    assert!(
        e.contains("accounts[0].url: only used with protocol = \"ews\""),
        "{e}"
    );
}

#[test]
fn missing_ca_file_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, format!("{ACCOUNT}ca_file = \"nope.pem\"\n")).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains(":5:11: accounts[0].ca_file:"), "{e}");
    assert!(e.contains("nope.pem does not exist"), "{e}");
}

/// The settings window loaded the file, then the tray switched keep-alive off; Save with a new
/// interval keeps the tray's switch. Where both changed the same key, the window's Save wins.
#[test]
fn saving_settings_keeps_what_another_writer_changed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, EXAMPLE).unwrap();
    let base = Config::load(&path).unwrap();
    assert!(base.keepalive.enabled);
    // The tray, meanwhile.
    Config::edit_file(&path, |doc| {
        doc["keepalive"]["enabled"] = toml_edit::value(false)
    })
    .unwrap();
    let mut form = base.clone();
    form.keepalive.interval_secs = 45;
    let written = form.save_merged_since(&path, &base).unwrap();
    let back = Config::load(&path).unwrap();
    assert_eq!(back, written);
    assert!(!back.keepalive.enabled, "the tray's switch was lost");
    assert_eq!(back.keepalive.interval_secs, 45);
    // Both changed the same key: the window's Save is the later, deliberate act.
    Config::edit_file(&path, |doc| {
        doc["keepalive"]["interval_secs"] = toml_edit::value(90)
    })
    .unwrap();
    let mut form = written.clone();
    form.keepalive.interval_secs = 60;
    form.accounts
        .push(Account::new("home", "imap.home.example", "bob"));
    form.save_merged_since(&path, &written).unwrap();
    let back = Config::load(&path).unwrap();
    assert_eq!(back.keepalive.interval_secs, 60);
    assert!(!back.keepalive.enabled);
    assert_eq!(back.accounts.len(), written.accounts.len() + 1);
}

/// Writers in several threads (standing for the tray, Settings and the command line) each add
/// one to the interval many times: with the edit lock no increment is lost.
#[test]
fn concurrent_edits_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, "[keepalive]\ninterval_secs = 100\n").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    Config::edit_file(&path, |doc| {
                        let n = doc["keepalive"]["interval_secs"].as_integer().unwrap();
                        doc["keepalive"]["interval_secs"] = toml_edit::value(n + 1);
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(Config::load(&path).unwrap().keepalive.interval_secs, 200);
}

#[test]
fn merge3_takes_each_sides_change() {
    use serde_json::json;
    let base = json!({"a": 1, "t": {"x": 1, "y": 1}, "list": [1]});
    let ours = json!({"a": 2, "t": {"x": 1, "y": 1}, "list": [1]});
    let theirs = json!({"a": 1, "t": {"x": 1, "y": 3}, "list": [1, 2]});
    assert_eq!(
        super::edit::merge3(&base, &ours, &theirs),
        json!({"a": 2, "t": {"x": 1, "y": 3}, "list": [1, 2]})
    );
    let ours = json!({"a": 1, "t": {"x": 1, "y": 1}, "list": [9]});
    assert_eq!(
        super::edit::merge3(&base, &ours, &theirs)["list"],
        json!([9])
    );
}

#[test]
fn graph_accounts_default_to_microsofts_endpoint() {
    const GRAPH: &str =
        "[[accounts]]\nname = \"m365\"\nprotocol = \"graph\"\nusername = \"a@contoso.com\"\n";
    let c = parse(&format!(
        "{GRAPH}auth = \"bearer\"\npassword_command = \"x\"\nfolders = [\"inbox\", \"Inbox/Work\"]\n"
    ))
    .unwrap();
    let a = &c.accounts[0];
    assert_eq!(a.graph_url(), GRAPH_URL);
    assert_eq!(a.host, "graph.microsoft.com", "the keyring entry's host");
    assert_eq!(a.effective_port(), 443);
    let c = parse(&format!(
        "{GRAPH}auth = \"bearer\"\npassword_command = \"x\"\nurl = \"https://graph.microsoft.us/v1.0\"\n"
    ))
    .unwrap();
    assert_eq!(c.accounts[0].host, "graph.microsoft.us");
}

#[test]
fn graph_mistakes_name_line_and_key() {
    const GRAPH: &str = "[[accounts]]\nname = \"m365\"\nprotocol = \"graph\"\nusername = \"u\"\n";
    let e = err(&format!("{GRAPH}password_command = \"x\"\n"));
    assert!(
        e.contains("accounts[0].auth: Microsoft Graph takes an OAuth2 access token"),
        "{e}"
    );
    let e = err(&format!("{GRAPH}auth = \"bearer\"\n"));
    assert!(
        e.contains("accounts[0].auth: auth = \"bearer\" needs a token source"),
        "{e}"
    );
    const OK: &str = "auth = \"bearer\"\npassword_command = \"x\"\n";
    let e = err(&format!(
        "{GRAPH}{OK}url = \"http://graph.example.com/v1.0\"\n"
    ));
    assert!(
        e.contains(":7:7: accounts[0].url: must start with https://"),
        "{e}"
    );
    let e = err(&format!("{GRAPH}{OK}port = 443\n"));
    assert!(e.contains("accounts[0].port: put the port into url"), "{e}");
    let e = err(&format!("{GRAPH}{OK}host = \"outlook.office365.com\"\n"));
    assert!(
        e.contains("accounts[0].host: names \"outlook.office365.com\""),
        "{e}"
    );
    let e = err(&format!("{GRAPH}{OK}folders = [\"Inbox//Work\"]\n"));
    assert!(
        e.contains("accounts[0].folders: \"Inbox//Work\" is not a folder"),
        "{e}"
    );
    let e = err(&format!("{GRAPH}{OK}security = \"starttls\"\n"));
    assert!(
        e.contains("accounts[0].security: Microsoft Graph always runs over HTTPS"),
        "{e}"
    );
}
