# Sourced by scripts/package-*.sh (`make package`): where things are, the version, and a few
# helpers. Not run on its own.
# shellcheck shell=bash disable=SC2034 # (the variables are for the scripts that source this)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
# cargo from the Makefile (CARGO=...), else PATH, else where scripts/install-deps.sh puts it.
if [ -z "${CARGO:-}" ]; then
  CARGO=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
fi
# Where the finished packages go (what a user downloads), and a scratch folder for staging.
package_dir=${PACKAGE_DIR:-$root/target/package}
work_dir=$package_dir/.work
# The cargo target directory: CARGO_TARGET_DIR when set, else ./target.
target_dir=${CARGO_TARGET_DIR:-$root/target}
# The version, from Cargo.toml ([package] is the first table, its version the first key named so).
version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "cannot read the version from Cargo.toml" >&2; exit 1; }

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$package_dir" "$work_dir"
