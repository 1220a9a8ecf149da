# mailpulse — see README.md. `make run` and `make test` install what they need first.
CARGO ?= cargo
CONFIG_DIR := $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/mailpulse

.PHONY: run build deps test-deps test lint clean

deps:
	scripts/install-deps.sh build

test-deps:
	scripts/install-deps.sh test

build: deps
	$(CARGO) build --release --locked

# Runs the agent headless (the tray arrives with the desktop shell). A first run writes the
# commented example config for you to fill in.
run: build
	@if [ ! -f "$(CONFIG_DIR)/config.toml" ]; then \
	  mkdir -p "$(CONFIG_DIR)" && install -m 600 config/mailpulse.toml "$(CONFIG_DIR)/config.toml" && \
	  echo "Wrote $(CONFIG_DIR)/config.toml: put your account in it, then run 'make run' again." && exit 1; \
	fi
	target/release/mailpulse check
	target/release/mailpulse watch

# Every test: unit tests (engine on a paused clock) and integration tests against a real,
# private Dovecot started by the tests themselves.
test: test-deps
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean
