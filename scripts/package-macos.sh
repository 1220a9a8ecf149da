#!/usr/bin/env bash
# mailpulse.app and a disk image (`make package` on macOS; docs/INSTALL.md), into
# target/package/: mailpulse.app (Contents/MacOS holds the three programs side by side, which is
# where mailpulse::companion looks; Info.plist from packaging/macos with Cargo.toml's version;
# LSUIElement, so no Dock icon) and mailpulse-VERSION-macos-ARCH.dmg (the app and a link to
# /Applications, to drag it there). The app is signed ad hoc, not with a Developer ID: Gatekeeper
# asks on first start (docs/INSTALL.md). Built for this Mac's architecture. Only standard macOS
# tools: plutil, sips/iconutil, codesign, hdiutil.
set -euo pipefail
# shellcheck source=package-common.sh source-path=SCRIPTDIR
source "$(dirname "$0")/package-common.sh"

[ "$(uname -s)" = Darwin ] || die "mailpulse.app and the .dmg are made on macOS (hdiutil, iconutil)"
arch=$(uname -m)

# Fat LTO: several minutes.
say "release build"
"$CARGO" build --release --locked
out="$target_dir/release"

app="$package_dir/mailpulse.app"
rm -rf "$app"
mkdir -p "$app/Contents/MacOS" "$app/Contents/Resources"
for p in mailpulse mailpulse-tray mailpulse-settings; do
  cp "$out/$p" "$app/Contents/MacOS/"
done
# CFBundleShortVersionString is three numbers: a pre-release suffix (-beta.1) is left out.
sed "s/@VERSION@/${version%%-*}/g" packaging/macos/Info.plist >"$app/Contents/Info.plist"
plutil -lint "$app/Contents/Info.plist"
printf 'APPL????' >"$app/Contents/PkgInfo"

# The icon: the "connected" drawing of assets/icons at the sizes it exists in (Finder scales).
iconset="$work_dir/mailpulse.iconset"
rm -rf "$iconset"
mkdir -p "$iconset"
cp assets/icons/connected-16.png "$iconset/icon_16x16.png"
cp assets/icons/connected-32.png "$iconset/icon_16x16@2x.png"
cp assets/icons/connected-32.png "$iconset/icon_32x32.png"
cp assets/icons/connected-64.png "$iconset/icon_32x32@2x.png"
if ! iconutil -c icns "$iconset" -o "$app/Contents/Resources/mailpulse.icns"; then
  say "iconutil failed: mailpulse.app has the generic icon"
fi

# Ad-hoc signature (no identity): the helpers first, then the bundle, which seals Info.plist.
for p in mailpulse-tray mailpulse-settings; do
  codesign --force --sign - "$app/Contents/MacOS/$p"
done
codesign --force --sign - "$app"
codesign --verify --strict --verbose=1 "$app"

for p in mailpulse mailpulse-tray mailpulse-settings; do
  say "$p: $("$app/Contents/MacOS/$p" --version)"
done

dmg_src="$work_dir/dmg"
rm -rf "$dmg_src"
mkdir -p "$dmg_src"
cp -R "$app" "$dmg_src/"
ln -s /Applications "$dmg_src/Applications"
dmg="$package_dir/mailpulse-$version-macos-$arch.dmg"
rm -f "$dmg"
hdiutil create -volname "mailpulse $version" -srcfolder "$dmg_src" -fs HFS+ -format UDZO -ov "$dmg"
hdiutil verify "$dmg"
say "built $app and $dmg"
