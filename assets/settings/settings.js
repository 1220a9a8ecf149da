// The settings page. It talks to the Rust side with JSON messages:
//   page → Rust: window.ipc.postMessage(JSON.stringify({op: ...}))
//   Rust → page: mailpulse.receive({op: ...})
// Everything is validated here for quick feedback and again in Rust before it is saved.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { config: null, stored: {}, passwords: {}, proxyPassword: "", selected: -1, nextTest: 1 };
const GENERAL = [
  ["keepalive.enabled", "bool"], ["keepalive.interval_secs", "int"], ["keepalive.response_timeout_secs", "int"],
  ["keepalive.adaptive", "bool"],
  ["notifications.show_errors", "bool"], ["notifications.error_grace_secs", "int"],
  ["logging.enabled", "bool"], ["logging.level", "str"], ["desktop.start_at_login", "bool"],
];
const OAUTH_TEXT = ["client_id", "client_secret_command", "tenant", "authorization_url", "token_url"];
const PROVIDER_NAMES = { google: "Google", microsoft: "Microsoft", generic: "your provider" };
const ACCOUNT_TEXT = ["name", "host", "url", "username", "password_command", "ca_file", "open_command", "webmail_url", "on_new_mail"];

function send(msg) { window.ipc.postMessage(JSON.stringify(msg)); }
function get(obj, path) { return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj); }
function set(obj, path, v) { const ks = path.split("."); const last = ks.pop(); ks.reduce((o, k) => (o[k] = o[k] || {}), obj)[last] = v; }
function status(text) { $("status").textContent = text; }

function fillGeneral() {
  for (const [id, kind] of GENERAL) {
    const el = $(id), v = get(state.config, id);
    if (kind === "bool") el.checked = !!v; else el.value = v;
  }
}
function readGeneral() {
  for (const [id, kind] of GENERAL) {
    const el = $(id);
    set(state.config, id, kind === "bool" ? el.checked : kind === "int" ? Number(el.value) : el.value);
  }
}

// The Network section: [network] proxy is "system", "none" or a URL (http://user@host:port,
// socks5://…, socks5h://…); the password goes to the keyring, never into the file.
function fillNetwork() {
  const proxy = (state.config.network && state.config.network.proxy) || "system";
  const manual = proxy !== "system" && proxy !== "none";
  $("net.mode").value = manual ? "manual" : proxy;
  let kind = "http", host = "", port = "", user = "";
  if (manual) {
    const m = /^(\w+):\/\/(?:([^@]*)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?\/?$/.exec(proxy);
    if (m) { kind = m[1]; user = m[2] ? decodeURIComponent(m[2]) : ""; host = m[3].replace(/^\[|\]$/g, ""); port = m[4] || ""; }
  }
  $("net.kind").value = kind; $("net.host").value = host; $("net.port").value = port; $("net.user").value = user;
  $("net.password").value = state.proxyPassword;
  showNetwork();
}
function showNetwork() { $("net.manual").hidden = $("net.mode").value !== "manual"; }
function readNetwork() {
  const mode = $("net.mode").value;
  let proxy = mode;
  if (mode === "manual") {
    const host = $("net.host").value.trim(), port = $("net.port").value.trim(), user = $("net.user").value.trim();
    const h = host.includes(":") ? "[" + host + "]" : host;
    proxy = $("net.kind").value + "://" + (user ? encodeURIComponent(user) + "@" : "") + h + (port ? ":" + port : "");
  }
  state.config.network = Object.assign({}, state.config.network, { proxy });
  state.proxyPassword = $("net.password").value;
}
// The account as Test, Diagnose, Find server and Sign in use it: with the proxy that applies.
function withProxy(a) {
  return Object.assign({}, a, { proxy: a.proxy || (state.config.network && state.config.network.proxy) || "system" });
}

function listAccounts() {
  const list = $("account-list");
  list.innerHTML = "";
  state.config.accounts.forEach((a, i) => {
    const o = document.createElement("option");
    o.value = String(i); o.textContent = a.name || "(unnamed)";
    list.appendChild(o);
  });
  if (state.selected >= state.config.accounts.length) state.selected = state.config.accounts.length - 1;
  list.value = String(state.selected);
  showAccount();
}
function showAccount() {
  const a = state.config.accounts[state.selected];
  $("account-editor").disabled = !a;
  $("remove-account").disabled = !a;
  $("test-result").textContent = "";
  if (!a) return;
  for (const k of ACCOUNT_TEXT) $("acct." + k).value = a[k] || "";
  $("acct.protocol").value = a.protocol || "imap";
  $("acct.security").value = a.security || "tls";
  $("acct.port").value = a.port == null ? "" : a.port;
  $("acct.folders").value = (a.folders || ["INBOX"]).join(", ");
  const o = a.oauth || {};
  $("acct.auth").value = a.auth || "password";
  $("acct.oauth.provider").value = o.provider || "google";
  for (const k of OAUTH_TEXT) $("acct.oauth." + k).value = o[k] || "";
  $("acct.oauth.scopes").value = (o.scopes || []).join(" ");
  $("signin-result").textContent = state.stored[a.name] === "signed_in" ? "Signed in (kept in the keyring)." : "";
  $("signin-result").className = "result oauth";
  $("discover-result").textContent = "";
  showProtocol();
  const pw = $("acct.password");
  pw.value = state.passwords[a.name] || "";
  pw.placeholder = state.stored[a.name] === "command" ? "from the password command below"
    : state.stored[a.name] ? "stored in the keyring (type to replace)" : "stored in the keyring when you save";
}
const OAUTH_METHODS = ["xoauth2", "oauthbearer", "bearer"];
// Show the fields of the chosen protocol: EWS has a URL instead of security and port, and its own
// sign-in methods; Graph has only the URL (optional: Microsoft's by default) and a bearer token.
function showProtocol() {
  const proto = $("acct.protocol").value;
  const ews = proto === "ews";
  const graph = proto === "graph";
  document.querySelectorAll("#account-editor .ews").forEach((el) => { el.hidden = !ews; });
  document.querySelectorAll("#account-editor .imap").forEach((el) => { el.hidden = ews || graph; });
  document.querySelectorAll("#account-editor .graph").forEach((el) => { if (graph) el.hidden = false; });
  document.querySelectorAll("#account-editor .not-graph").forEach((el) => { el.hidden = graph; });
  for (const o of $("acct.auth").options) o.disabled = o.hidden;
  const auth = $("acct.auth");
  if (auth.selectedOptions[0] && auth.selectedOptions[0].disabled) auth.value = graph ? "bearer" : "password";
  $("url-label").textContent = graph ? "Graph URL" : "EWS URL";
  $("acct.url").placeholder = graph ? "https://graph.microsoft.com/v1.0 (the default)"
    : "https://mail.example.com/EWS/Exchange.asmx — or Find server";
  $("acct.host").placeholder = ews ? "optional with an EWS URL: mail.example.com" : "imap.example.com";
  $("acct.host").required = !ews && !graph;
  showAuth();
}
// Show the fields of the chosen sign-in method (and provider).
function showAuth() {
  const oauth = OAUTH_METHODS.includes($("acct.auth").value);
  const provider = $("acct.oauth.provider").value;
  document.querySelectorAll(".oauth").forEach((el) => {
    el.hidden = !oauth || (el.classList.contains("generic") && provider !== "generic")
      || (el.classList.contains("microsoft") && provider !== "microsoft");
  });
  document.querySelectorAll(".password-only").forEach((el) => { el.hidden = oauth; });
  $("password-command-label").textContent = oauth ? "…or access token command" : "…or password command";
  $("sign-in").textContent = "Sign in with " + PROVIDER_NAMES[provider] + "…";
}
function readAccount() {
  const a = state.config.accounts[state.selected];
  if (!a) return;
  const oldName = a.name;
  for (const k of ACCOUNT_TEXT) { const v = $("acct." + k).value.trim(); a[k] = v === "" ? null : v; }
  a.name = a.name || "";
  a.host = a.host || "";
  const http = ["ews", "graph"].includes($("acct.protocol").value);
  if (!http) a.url = null;
  if ($("acct.protocol").value === "graph") a.host = "";
  a.username = a.username || "";
  a.protocol = $("acct.protocol").value;
  a.security = http ? "tls" : $("acct.security").value;
  const port = $("acct.port").value.trim();
  a.port = port === "" || http ? null : Number(port);
  a.folders = $("acct.folders").value.split(",").map((f) => f.trim()).filter((f) => f);
  a.auth = $("acct.auth").value;
  const clientId = $("acct.oauth.client_id").value.trim();
  if (!OAUTH_METHODS.includes(a.auth) || (!clientId && a.password_command)) {
    a.oauth = null;
  } else {
    const o = { provider: $("acct.oauth.provider").value, client_id: clientId };
    for (const k of OAUTH_TEXT.slice(1)) { const v = $("acct.oauth." + k).value.trim(); o[k] = v === "" ? null : v; }
    const scopes = $("acct.oauth.scopes").value.split(/\s+/).filter((x) => x);
    o.scopes = scopes.length ? scopes : null;
    if (o.provider !== "microsoft") o.tenant = null;
    a.oauth = o;
  }
  const pw = $("acct.password").value;
  if (oldName !== a.name) { delete state.passwords[oldName]; state.stored[a.name] = state.stored[oldName]; }
  if (pw) state.passwords[a.name] = pw; else delete state.passwords[a.name];
  const opt = $("account-list").options[state.selected];
  if (opt) opt.textContent = a.name || "(unnamed)";
}

function clearInvalid() {
  document.querySelectorAll(".invalid").forEach((el) => { el.classList.remove("invalid"); el.removeAttribute("aria-invalid"); });
  $("banner").hidden = true;
}
function showInvalid(key, message) {
  let id = key === "network.proxy" ? "net.host" : key;
  const m = /^accounts\[(\d+)\]\.([\w.]+)$/.exec(key);
  if (m) {
    state.selected = Number(m[1]);
    $("account-list").value = m[1];
    showAccount();
    id = "acct." + (m[2] === "password" ? "password_command" : m[2]);
  }
  const el = $(id);
  $("banner").textContent = message;
  $("banner").hidden = false;
  if (el) { el.classList.add("invalid"); el.setAttribute("aria-invalid", "true"); el.focus(); }
  status("Not saved.");
}
// Quick checks in the page; Rust checks everything again.
function checkPage() {
  const interval = Number($("keepalive.interval_secs").value);
  if (!Number.isInteger(interval) || interval < 30 || interval > 1740) {
    return ["keepalive.interval_secs", "The keep-alive interval must be a whole number of seconds from 30 to 1740."];
  }
  if ($("net.mode").value === "manual") {
    if (!$("net.host").value.trim()) return ["net.host", "Enter the proxy's host name, or choose the system's proxy settings."];
    const port = Number($("net.port").value);
    if (!Number.isInteger(port) || port < 1 || port > 65535) return ["net.port", "The proxy's port must be 1–65535."];
    if (state.proxyPassword && !$("net.user").value.trim()) return ["net.user", "Enter the proxy's user for its password."];
  }
  for (let i = 0; i < state.config.accounts.length; i++) {
    const a = state.config.accounts[i];
    if (!a.name) return [`accounts[${i}].name`, "Give the account a name."];
    if (a.protocol === "ews") {
      if (!a.host && !a.url) return [`accounts[${i}].url`, "Enter the EWS URL (or press Find server), or the server's host name."];
    } else if (a.protocol !== "graph" && !a.host) return [`accounts[${i}].host`, "Enter the mail server's host name."];
    if (!a.username) return [`accounts[${i}].username`, "Enter the user name."];
    if (a.port != null && !(Number.isInteger(a.port) && a.port >= 1 && a.port <= 65535)) return [`accounts[${i}].port`, "The port must be 1–65535."];
  }
  return null;
}

function save(close) {
  clearInvalid();
  readGeneral();
  readNetwork();
  readAccount();
  const bad = checkPage();
  if (bad) { showInvalid(bad[0], bad[1]); return; }
  status("Saving…");
  send({ op: "save", close, config: state.config, passwords: state.passwords, proxy_password: state.proxyPassword || null });
}

const handlers = {
  load(msg) {
    state.config = msg.config;
    state.stored = msg.stored || {};
    state.selected = state.config.accounts.length ? 0 : -1;
    $("version").textContent = msg.version;
    $("config-path").textContent = msg.config_path;
    $("homepage").textContent = msg.homepage;
    fillGeneral();
    fillNetwork();
    const learned = Object.entries(msg.learned || {}).map(([name, secs]) => `${name} every ${secs} s`);
    $("learned").textContent = learned.length ? "learned on this network: " + learned.join(", ") : "";
    listAccounts();
    if (msg.error) { $("banner").textContent = msg.error; $("banner").hidden = false; }
    if (msg.page === "about") $("about").scrollIntoView();
    else if (!state.config.accounts.length) $("add-account").focus();
    status("");
  },
  saved(msg) {
    for (const name of Object.keys(state.passwords)) state.stored[name] = "keyring";
    state.passwords = {};
    state.proxyPassword = "";
    $("net.password").value = "";
    $("net.password").placeholder = "stored in the keyring (type to replace)";
    showAccount();
    status("Saved.");
  },
  invalid(msg) { showInvalid(msg.key, msg.message); },
  error(msg) { $("banner").textContent = msg.message; $("banner").hidden = false; status("Not saved."); },
  signin_url(msg) {
    const r = $("signin-result");
    r.className = "result oauth";
    r.textContent = "Waiting for you to sign in in the browser. If it did not open, open this address: " + msg.url;
  },
  signed_in(msg) {
    const r = $("signin-result");
    r.textContent = msg.text;
    r.className = "result oauth " + (msg.ok ? "ok" : "fail");
    if (msg.ok) state.stored[msg.account] = "signed_in";
    $("sign-in").disabled = false;
  },
  discovered(msg) {
    const r = $("discover-result");
    r.textContent = msg.text;
    r.className = "result ews " + (msg.ok ? "ok" : "fail");
    if (msg.ok) {
      $("acct.url").value = msg.url;
      $("acct.host").value = ""; // the URL names the server
      readAccount();
    }
    $("discover").disabled = false;
  },
  tested(msg) {
    const r = $("test-result");
    r.textContent = msg.text;
    r.className = "result " + (msg.ok ? "ok" : "fail");
    $("test-account").disabled = false;
  },
  diagnosing(msg) { $("diagnose-result").className = "result"; $("diagnose-result").textContent = msg.text; },
  diagnosed(msg) {
    const r = $("diagnose-result");
    r.textContent = msg.text;
    r.className = "result " + (msg.ok ? "ok" : "fail");
    $("diagnose").disabled = false;
  },
};
window.mailpulse = { receive(msg) { (handlers[msg.op] || (() => {}))(msg); } };

document.addEventListener("DOMContentLoaded", () => {
  $("account-list").addEventListener("change", () => { readAccount(); state.selected = Number($("account-list").value); showAccount(); });
  document.querySelectorAll("#account-editor input, #account-editor select").forEach((el) => el.addEventListener("change", readAccount));
  $("add-account").addEventListener("click", () => {
    readAccount();
    const n = state.config.accounts.length + 1;
    state.config.accounts.push({ name: n === 1 ? "mail" : "mail" + n, protocol: "imap", host: "", security: "tls", username: "", folders: ["INBOX"] });
    state.selected = state.config.accounts.length - 1;
    listAccounts();
    $("acct.host").focus();
  });
  $("remove-account").addEventListener("click", () => {
    const a = state.config.accounts[state.selected];
    if (!a) return;
    state.config.accounts.splice(state.selected, 1);
    delete state.passwords[a.name];
    state.selected = Math.min(state.selected, state.config.accounts.length - 1);
    listAccounts();
  });
  $("test-account").addEventListener("click", () => {
    readGeneral(); readNetwork(); readAccount();
    const a = state.config.accounts[state.selected];
    if (!a) return;
    const bad = checkPage();
    if (bad && bad[0].startsWith("net.")) { showInvalid(bad[0], bad[1]); return; }
    $("test-account").disabled = true;
    $("test-result").className = "result";
    const through = $("net.mode").value === "manual" ? " through the proxy " + $("net.host").value.trim() : "";
    $("test-result").textContent = "Connecting to " + (a.host || "?") + through + "…";
    send({ op: "test", account: withProxy(a), password: state.passwords[a.name] || null, keepalive: state.config.keepalive, proxy_password: state.proxyPassword || null });
  });
  $("acct.auth").addEventListener("change", showAuth);
  $("net.mode").addEventListener("change", () => { showNetwork(); readNetwork(); });
  $("acct.protocol").addEventListener("change", showProtocol);
  $("discover").addEventListener("click", () => {
    clearInvalid(); readAccount();
    const a = state.config.accounts[state.selected];
    if (!a) return;
    if (!a.username || !a.username.includes("@")) { showInvalid(`accounts[${state.selected}].username`, "Find server needs your e-mail address as the user name."); return; }
    $("discover").disabled = true;
    $("discover-result").className = "result ews";
    $("discover-result").textContent = "Asking autodiscover for " + a.username + "…";
    readNetwork();
    send({ op: "discover", account: withProxy(a), password: state.passwords[a.name] || null });
  });
  $("acct.oauth.provider").addEventListener("change", showAuth);
  $("sign-in").addEventListener("click", () => {
    clearInvalid(); readGeneral(); readAccount();
    const a = state.config.accounts[state.selected];
    if (!a) return;
    if (!a.oauth || !a.oauth.client_id) { showInvalid(`accounts[${state.selected}].oauth.client_id`, "Enter the client id of your app registration first (see the README)."); return; }
    $("sign-in").disabled = true;
    $("signin-result").className = "result oauth";
    $("signin-result").textContent = "Opening your browser…";
    readNetwork();
    send({ op: "signin", account: withProxy(a) });
  });
  $("diagnose").addEventListener("click", () => {
    readGeneral(); readNetwork(); readAccount();
    const a = state.config.accounts[state.selected];
    if (!a) return;
    $("diagnose").disabled = true;
    $("diagnose-result").className = "result";
    $("diagnose-result").textContent = "Measuring how long this network keeps idle connections to " + (a.host || "?") + " (up to " + Math.ceil((state.config.keepalive.adaptive_max_secs || 1740) * 1.5 / 60) + " minutes)…";
    send({ op: "diagnose", account: withProxy(a), password: state.passwords[a.name] || null, keepalive: state.config.keepalive });
  });
  $("ok").addEventListener("click", () => save(true));
  $("apply").addEventListener("click", () => save(false));
  $("cancel").addEventListener("click", () => send({ op: "cancel" }));
  $("homepage").addEventListener("click", (e) => { e.preventDefault(); send({ op: "open_homepage" }); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") send({ op: "cancel" }); });
  send({ op: "ready" });
});
