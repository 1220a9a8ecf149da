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

if ! command -v cargo >/dev/null 2>&1; then
  echo "mailpulse needs Rust (cargo). Install it from https://rustup.rs and run this again." >&2
  exit 1
fi

if command -v apt-get >/dev/null 2>&1; then
  pkgs=(pkg-config libssl-dev libgtk-3-dev libwebkit2gtk-4.1-dev)
  [ "$what" = test ] && pkgs+=(dovecot-imapd dovecot-lmtpd openssl iproute2 nftables conntrack dbus-daemon dbus-bin gnome-keyring desktop-file-utils libglib2.0-bin xvfb dunst python3-gi gir1.2-glib-2.0 imagemagick xdg-utils xdotool libxml2-utils python3-venv)
  # libxml2-utils: xmllint validates the EWS traffic of tests/ews.rs against Microsoft's schema;
  # python3-venv: the exchangelib interop test installs exchangelib from PyPI into a venv.
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    need_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # policy-rc.d keeps the package from starting the system Dovecot: tests start their own.
    need_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
elif command -v dnf >/dev/null 2>&1; then
  pkgs=(pkgconf-pkg-config openssl-devel gtk3-devel webkit2gtk4.1-devel)
  [ "$what" = test ] && pkgs+=(dovecot libxml2 python3)
  need_root dnf install -y "${pkgs[@]}"
elif command -v pacman >/dev/null 2>&1; then
  pkgs=(pkgconf openssl gtk3 webkit2gtk-4.1)
  [ "$what" = test ] && pkgs+=(dovecot libxml2 python)
  need_root pacman -S --needed --noconfirm "${pkgs[@]}"
elif command -v brew >/dev/null 2>&1; then
  # macOS uses the system TLS library; the test suite's Dovecot comes from Homebrew.
  [ "$what" = test ] && brew install dovecot
else
  echo "Unknown package manager: install pkg-config and the OpenSSL headers yourself." >&2
fi
