# mailpulse — see README.md. `make run` and `make test` install what they need first.
SHELL := /bin/bash
# cargo from PATH, else where scripts/install-deps.sh puts it (rustup, ~/.cargo/bin).
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
CONFIG_DIR := $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/mailpulse

.PHONY: run demo bench bench-smoke build deps test-deps test lint cross-check clean

deps:
	scripts/install-deps.sh build

test-deps:
	scripts/install-deps.sh test

build: deps
	$(CARGO) build --release --locked

# Starts the tray agent (the first run writes a commented config and opens Settings). Without a
# graphical session it runs headless (`mailpulse watch`) on an existing config instead.
run: build
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
	  exec target/release/mailpulse; \
	elif [ -f "$(CONFIG_DIR)/config.toml" ]; then \
	  target/release/mailpulse check && exec target/release/mailpulse watch; \
	else \
	  mkdir -p "$(CONFIG_DIR)" && install -m 600 config/mailpulse.toml "$(CONFIG_DIR)/config.toml" && \
	  echo "No graphical session. Wrote $(CONFIG_DIR)/config.toml: put your account in it and run 'make run' again."; \
	fi

# A private Dovecot with a demo account, the tray pointed at it, a new message every 20 s.
demo: build test-deps
	$(CARGO) build --release --locked --example demo
	target/release/examples/demo target/release/mailpulse

# Every test: unit tests (engine on a paused clock) and integration tests against a real,
# private Dovecot started by the tests themselves.
# The tests mostly wait on servers, so they run 8 at a time even on 2 cores. The last line sums
# up every test binary's result.
test: test-deps
	@mkdir -p target
	@set -o pipefail; $(CARGO) test --locked --all-targets -- --test-threads=8 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0 || p == 0) }' target/test.log

# Benchmarks against floors measured in the same run (needs the test dependencies: a private
# Dovecot, and Xvfb/dunst for the desktop figures). Prints a table, writes bench/results.json.
# The headless build (no GTK/WebKit linked in) is measured beside the default one.
bench: build test-deps
	$(CARGO) build --release --locked --no-default-features --target-dir target/headless
	$(CARGO) build --release --locked --example bench
	target/release/examples/bench --headless target/headless/release/mailpulse target/release/mailpulse

# A short smoke run of the benchmark for CI (debug build, a few deliveries).
bench-smoke:
	$(CARGO) build --locked --example bench
	$(CARGO) build --locked
	target/debug/examples/bench --quick target/debug/mailpulse

# Windows and macOS on every change: lib, bins, tests and examples, with and without the desktop
# shell (and this machine with OpenSSL, the `native-tls` feature), type-checked and clippy-clean (`clippy` is `check` plus the lints, so one pass does both).
# Nothing is linked: the Apple targets' one C file (objc2-exception-helper) goes to a stand-in
# compiler. `rustup target add` is in scripts/install-deps.sh.
CROSS_TARGETS := x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin
cross-check: test-deps
	@set -e; for t in $(CROSS_TARGETS); do \
	  for f in "" "--no-default-features"; do \
	    echo "== cross-check $$t $${f:-(default features)}"; \
	    env CC_$${t//-/_}=$(CURDIR)/scripts/stub-cc AR_$${t//-/_}=$(CURDIR)/scripts/stub-cc \
	      $(CARGO) clippy --locked --target $$t --all-targets $$f -- -D warnings; \
	  done; \
	done
	@echo "== cross-check this machine, --features native-tls (OpenSSL instead of rustls)"
	$(CARGO) clippy --locked --all-targets --no-default-features --features native-tls -- -D warnings

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Packages a user installs (docs/INSTALL.md), into target/package/: what this OS can build.
#   Linux:   the .deb (cargo-deb, installed once when missing) and the Windows zip, cross-built
#            with mingw-w64 and run under Wine when it is installed
#   macOS:   mailpulse.app and a .dmg
#   Windows: the zip (Git Bash)
# Each is a release build with fat LTO: several minutes per target on 2 cores.
.PHONY: package package-deb package-windows package-macos
PACKAGE_OS := $(shell uname -s)
ifeq ($(PACKAGE_OS),Darwin)
package: package-macos
else ifneq ($(filter MINGW% MSYS% CYGWIN%,$(PACKAGE_OS)),)
package: package-windows
else
package: package-deb package-windows
endif

package-deb: deps
	CARGO="$(CARGO)" scripts/package-deb.sh

package-windows:
	CARGO="$(CARGO)" scripts/package-windows.sh

package-macos: deps
	CARGO="$(CARGO)" scripts/package-macos.sh
