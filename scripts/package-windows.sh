#!/usr/bin/env bash
# The Windows zip (`make package`; docs/INSTALL.md): on Linux cross-built with mingw-w64 for
# x86_64-pc-windows-gnu, on Windows (Git Bash) built natively for the host's Rust target. Into
# target/package/mailpulse-VERSION-windows-ARCH.zip, one folder holding mailpulse.exe,
# mailpulse-tray.exe, mailpulse-settings.exe (mailpulse::companion finds them side by side),
# WebView2Loader.dll on the gnu target (the desktop build imports it there; the msvc target links
# the loader statically), README.md, INSTALL.md, LICENSE and config.example.toml.
# Then each program is run with --version: natively on Windows, under Wine on Linux when Wine is
# installed (with a test-only ProcessPrng shim beside copies of the programs, never in the zip).
#   WINDOWS_TARGET   the Rust target (default: x86_64-pc-windows-gnu, or the host's on Windows)
set -euo pipefail
# shellcheck source=package-common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/package-common.sh"

case "$(uname -s)" in
  MINGW* | MSYS* | CYGWIN*) on_windows=1 ;;
  *) on_windows= ;;
esac
host=$("$CARGO" -vV | sed -n 's/^host: //p')
if [ -n "$on_windows" ]; then
  target=${WINDOWS_TARGET:-$host}
else
  target=${WINDOWS_TARGET:-x86_64-pc-windows-gnu}
fi
case "$target" in
  *-windows-*) ;;
  *) die "WINDOWS_TARGET=$target is not a Windows target" ;;
esac
arch=${target%%-*}

# The cross toolchain: Rust's standard library for the target and the mingw-w64 linker.
if [ "$target" != "$host" ]; then
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$target"; then
    say "rustup target add $target"
    rustup target add "$target"
  fi
  if [[ "$target" == x86_64-pc-windows-gnu ]] && ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    die "the mingw-w64 linker x86_64-w64-mingw32-gcc is missing (Debian/Ubuntu: apt-get install gcc-mingw-w64-x86-64; scripts/install-deps.sh test installs it)"
  fi
fi

# Fat LTO: several minutes on 2 cores.
say "release build for $target"
"$CARGO" build --release --locked --target "$target"
out="$target_dir/$target/release"

name="mailpulse-$version-windows-$arch"
stage="$work_dir/$name"
rm -rf "$stage"
mkdir -p "$stage"
for p in mailpulse mailpulse-tray mailpulse-settings; do
  cp "$out/$p.exe" "$stage/"
done
# webview2-com-sys's build script leaves the loader in its OUT_DIR (newest build if several).
if [[ "$target" == *-gnu* ]]; then
  case "$arch" in
    x86_64) dll_arch=x64 ;;
    aarch64) dll_arch=arm64 ;;
    *) dll_arch=x86 ;;
  esac
  loader=
  for f in "$out"/build/webview2-com-sys-*/out/"$dll_arch"/WebView2Loader.dll; do
    if [ -f "$f" ] && { [ -z "$loader" ] || [ "$f" -nt "$loader" ]; }; then loader=$f; fi
  done
  [ -n "$loader" ] || die "WebView2Loader.dll not found under $out/build/webview2-com-sys-*/out/$dll_arch"
  cp "$loader" "$stage/"
fi
cp README.md LICENSE docs/INSTALL.md "$stage/"
cp config/mailpulse.toml "$stage/config.example.toml"

zip="$package_dir/$name.zip"
rm -f "$zip"
if command -v zip >/dev/null 2>&1; then
  (cd "$work_dir" && zip -qr -X "$zip" "$name")
elif command -v 7z >/dev/null 2>&1; then
  (cd "$work_dir" && 7z a -tzip -bd "$zip" "$name" >/dev/null)
else
  (cd "$work_dir" && python3 -m zipfile -c "$zip" "$name")
fi
say "built $zip"
if command -v unzip >/dev/null 2>&1; then
  unzip -l "$zip"
fi

# --- Smoke check: every program starts and prints its version --------------------------------
expected="$version"
check_version() { # what printed
  case "$2" in
    *"$expected"*) say "$1: $2" ;;
    *) die "$1 --version printed '$2', expected the version $expected" ;;
  esac
}
if [ -n "$on_windows" ]; then
  for p in mailpulse mailpulse-tray mailpulse-settings; do
    check_version "$p.exe" "$("$stage/$p.exe" --version | tr -d '\r')"
  done
elif command -v wine >/dev/null 2>&1 && command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 &&
  [ "$arch" = x86_64 ]; then
  say "smoke check under $(wine --version 2>/dev/null)"
  smoke=$(mktemp -d)
  export WINEPREFIX="$smoke/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
  cleanup() {
    timeout 30 wineserver -k 2>/dev/null || true
    rm -rf "$smoke"
  }
  trap cleanup EXIT
  mkdir "$smoke/bin"
  cp "$stage"/*.exe "$smoke/bin/"
  if [ -f "$stage/WebView2Loader.dll" ]; then cp "$stage/WebView2Loader.dll" "$smoke/bin/"; fi
  # Wine 8 lacks ProcessPrng, which Rust's std calls (see tests/wine/bcryptprimitives.c): a copy
  # of the programs gets the test shim beside it; the zip never does.
  x86_64-w64-mingw32-gcc -O2 -shared -o "$smoke/bin/bcryptprimitives.dll" \
    tests/wine/bcryptprimitives.c tests/wine/bcryptprimitives.def -lbcrypt
  env -u DISPLAY -u WAYLAND_DISPLAY timeout 300 wineboot --init </dev/null >/dev/null 2>&1
  for p in mailpulse mailpulse-tray mailpulse-settings; do
    check_version "wine $p.exe" \
      "$(env -u DISPLAY -u WAYLAND_DISPLAY timeout 120 wine "$smoke/bin/$p.exe" --version </dev/null | tr -d '\r')"
  done
else
  say "smoke check skipped: no Wine (Debian: apt-get install wine wine64) or no mingw-w64"
fi
