#!/usr/bin/env bash
# Installs what mailpulse needs, with whichever package manager this system has.
#   scripts/install-deps.sh build   # to build and run the agent
#   scripts/install-deps.sh test    # plus what the test suite starts (a private Dovecot)
# Uses sudo only when not root. Installs nothing that is already there.
set -euo pipefail
what=${1:-build}

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Rust: mailpulse needs 1.89 or newer (edition 2024, File::lock). Distribution packages are often older,
# so a missing toolchain comes from rustup (into ~/.cargo, no root), which the Makefile finds.
rust_min=89
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is not installed; installing it with rustup (https://rustup.rs) into ~/.cargo …"
  if ! command -v curl >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      need_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates
    else
      echo "mailpulse needs Rust (cargo): install curl, or Rust from https://rustup.rs, and run this again." >&2
      exit 1
    fi
  fi
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  PATH="$HOME/.cargo/bin:$PATH"
fi
minor=$(cargo --version | sed -E 's/^cargo 1\.([0-9]+).*/\1/')
if [ "${minor:-0}" -lt "$rust_min" ] 2>/dev/null; then
  if command -v rustup >/dev/null 2>&1; then
    echo "Rust $(cargo --version) is older than 1.$rust_min; updating with rustup …"
    rustup update stable
  else
    echo "mailpulse needs Rust 1.$rust_min or newer, found $(cargo --version) from $(command -v cargo)." >&2
    echo "Install a current one from https://rustup.rs (it goes to ~/.cargo) and run this again." >&2
    exit 1
  fi
fi

if command -v apt-get >/dev/null 2>&1; then
  # gcc: the linker Rust calls, and the C parts of ring (TLS crypto) and QuickJS (PAC scripts).
  pkgs=(gcc pkg-config libgtk-3-dev libwebkit2gtk-4.1-dev)
  [ "$what" = test ] && pkgs+=(libssl-dev dovecot-imapd dovecot-lmtpd openssl iproute2 nftables conntrack dbus-daemon dbus-bin gnome-keyring desktop-file-utils libglib2.0-bin xvfb dunst python3-gi gir1.2-glib-2.0 imagemagick xdg-utils xdotool libxml2-utils python3-venv gcc-mingw-w64-x86-64 wine wine64 squid dante-server winbind)
  # libssl-dev: the EWS and Graph test servers' TLS is OpenSSL (native-tls), a stack other than
  # the agent's rustls; the agent itself needs it only when built with `--features native-tls`;
  # squid, dante-server: tests/proxy.rs runs them as the only way out of its test network;
  # winbind: Samba's ntlm_auth, which checks NTLM sign-ins behind the tests' Squid and is
  # Wine's NTLM (SSPI) in tests/wine.rs;
  # libxml2-utils: xmllint validates the EWS traffic of tests/ews.rs against Microsoft's schema;
  # python3-venv: the interop tests install exchangelib and msgraph-sdk from PyPI into venvs;
  # gcc-mingw-w64-x86-64, wine, wine64: tests/wine.rs links mailpulse.exe and runs it under Wine.
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    need_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # RUNLEVEL=1 keeps the packages from starting the system Dovecot, Squid and Dante: tests
    # start their own.
    need_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
elif command -v dnf >/dev/null 2>&1; then
  pkgs=(pkgconf-pkg-config gtk3-devel webkit2gtk4.1-devel)
  [ "$what" = test ] && pkgs+=(openssl-devel dovecot openssl iproute nftables conntrack-tools dbus-daemon gnome-keyring desktop-file-utils glib2 xorg-x11-server-Xvfb dunst python3-gobject ImageMagick xdg-utils xdotool libxml2 python3 squid dante-server samba-winbind-clients)
  need_root dnf install -y "${pkgs[@]}"
elif command -v pacman >/dev/null 2>&1; then
  pkgs=(pkgconf gtk3 webkit2gtk-4.1)
  [ "$what" = test ] && pkgs+=(openssl dovecot iproute2 nftables conntrack-tools dbus gnome-keyring desktop-file-utils glib2 xorg-server-xvfb dunst python-gobject imagemagick xdg-utils xdotool libxml2 python squid dante samba)
  need_root pacman -S --needed --noconfirm "${pkgs[@]}"
elif command -v brew >/dev/null 2>&1; then
  # macOS uses the system TLS library; the test suite's Dovecot comes from Homebrew.
  [ "$what" = test ] && brew install dovecot
else
  echo "Unknown package manager: install pkg-config and the GTK 3 and WebKitGTK headers yourself (and the OpenSSL headers for the tests)." >&2
fi

# `make cross-check` type-checks Windows and macOS with clippy, and tests/wine.rs builds
# mailpulse.exe: clippy and the three targets' standard libraries come from rustup (without
# rustup, cross-check cannot run and the Wine test says it skips).
if [ "$what" = test ] && command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  for t in x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$t"; then
      echo "Adding the Rust target $t (make cross-check, tests/wine.rs) …"
      rustup target add "$t"
    fi
  done
fi

# The independent clients of the interop tests, from PyPI into the venvs under target/ that the
# tests use (each test also makes its venv when it is missing). The pins are read from the tests.
if [ "$what" = test ] && command -v python3 >/dev/null 2>&1; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  for spec in "graph-interop-venv:tests/graph_interop.rs:MSGRAPH_SDK" "ews-interop-venv:tests/ews_interop.rs:EXCHANGELIB"; do
    IFS=: read -r venv file name <<<"$spec"
    pin=$(sed -n "s/^const $name: &str = \"\(.*\)\";/\1/p" "$root/$file")
    dir="${CARGO_TARGET_DIR:-$root/target}/$venv"
    if [ -n "$pin" ] && ! "$dir/bin/pip" show -q "${pin%%==*}" >/dev/null 2>&1; then
      echo "Installing $pin into $dir (interop test) …"
      python3 -m venv --clear "$dir" && "$dir/bin/pip" install --quiet --disable-pip-version-check "$pin"
    fi
  done
fi
