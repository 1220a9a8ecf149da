#!/usr/bin/env bash
# The Debian/Ubuntu package (`make package` on Linux; docs/INSTALL.md): the release build, then
# cargo-deb with [package.metadata.deb] from Cargo.toml, into target/package/. Then it checks the
# result: control fields and file list (dpkg-deb), the desktop file (desktop-file-validate, when
# installed), lintian (when installed), and the programs unpacked into a throwaway root.
# Nothing is installed system-wide.
#   CARGO_DEB_VERSION   the cargo-deb installed when `cargo deb` is missing (default below)
set -euo pipefail
# shellcheck source=package-common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/package-common.sh"

# cargo-deb from crates.io when missing: a one-time build of about 2-3 minutes on 2 cores.
if ! "$CARGO" deb --version >/dev/null 2>&1; then
  say "installing cargo-deb ${CARGO_DEB_VERSION:-3.8.0} (cargo install, once)"
  # Its own temporary target directory, not this project's.
  env -u CARGO_TARGET_DIR "$CARGO" install --locked cargo-deb --version "${CARGO_DEB_VERSION:-3.8.0}"
fi

# The same build as `make build` (fat LTO: several minutes on 2 cores, nothing when up to date).
say "release build"
"$CARGO" build --release --locked

say "cargo deb"
deb=$("$CARGO" deb --no-build --output "$package_dir/" | tail -n 1)
[ -f "$deb" ] || die "cargo deb did not say where the package is (got: $deb)"
say "built $deb"

# --- Checks ---------------------------------------------------------------------------------
say "dpkg-deb -I"
dpkg-deb -I "$deb"
say "dpkg-deb -c"
dpkg-deb -c "$deb"

# Everything a user gets must be there.
listing=$(dpkg-deb -c "$deb" | awk '{ print $NF }')
for f in ./usr/bin/mailpulse ./usr/bin/mailpulse-tray ./usr/bin/mailpulse-settings \
  ./usr/share/applications/mailpulse.desktop \
  ./usr/share/icons/hicolor/16x16/apps/mailpulse.png \
  ./usr/share/icons/hicolor/32x32/apps/mailpulse.png \
  ./usr/share/icons/hicolor/64x64/apps/mailpulse.png \
  ./usr/share/doc/mailpulse/examples/config.toml; do
  grep -qx -- "$f" <<<"$listing" || die "$f is missing from $deb"
done
# Start at login is each user's own choice (the app writes ~/.config/autostart itself).
if grep -q '^\./etc/xdg/autostart/' <<<"$listing"; then
  die "$deb installs a system-wide autostart entry"
fi
depends=$(dpkg-deb -f "$deb" Depends)
say "Depends: $depends"
for lib in libc6 libgtk-3-0 libwebkit2gtk-4.1-0; do
  grep -q "$lib" <<<"$depends" || die "Depends lacks $lib: $depends"
done

if command -v desktop-file-validate >/dev/null 2>&1; then
  say "desktop-file-validate"
  desktop-file-validate packaging/linux/mailpulse.desktop
fi

# Unpacked into a throwaway root: the programs start and find every library.
root_dir=$(mktemp -d)
trap 'rm -rf "$root_dir"' EXIT
dpkg -x "$deb" "$root_dir"
for p in mailpulse mailpulse-tray mailpulse-settings; do
  if ldd "$root_dir/usr/bin/$p" | grep 'not found'; then
    die "$p needs a library that is not installed"
  fi
done
say "$("$root_dir/usr/bin/mailpulse" --version) (unpacked from $(basename "$deb"))"

# Lintian's verdict is printed, not enforced: it reports no-changelog and no-manual-page, which
# are left undone on purpose (docs/INSTALL.md).
if command -v lintian >/dev/null 2>&1; then
  say "lintian"
  lintian --tag-display-limit 0 "$deb" || true
fi
