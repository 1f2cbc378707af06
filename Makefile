# rulebox: the two commands a newcomer needs, and a few more.
#   make demo   build everything and tell the story on built-in content
#   make demo-fleet  a real fleet on loopback: controller, repository, agents, a bad and a good release
#   make test   run every test
#   make install  the rulebox binary, for use outside the checkout (PREFIX=/opt/rulebox for another place)
# Both install the WebAssembly targets the build needs (rules are built from source, never committed).

CARGO ?= cargo
WASM_TARGETS = wasm32-unknown-unknown wasm32-wasip1

.PHONY: demo demo-fleet test targets lint bench ci install

targets:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown && rustup target list --installed | grep -qx wasm32-wasip1 \
		|| rustup target add $(WASM_TARGETS)

demo: targets
	$(CARGO) run --quiet -p rulebox-cli -- demo

# The controller on SQLite serving the repository itself (no nginx), five agent processes: a good
# release ring by ring (with a kill -9 of the controller), a crashing one halted in ring 0 and
# reverted. It is the end-to-end test run small, with its story on stderr (about a minute).
demo-fleet: targets
	RULEBOX_E2E_AGENTS=5 RULEBOX_E2E_NO_NGINX=1 $(CARGO) test --quiet -p rulebox-cli --features fault-injection --test fleet_e2e -- --nocapture on_sqlite

# The second run adds the test-only fault-injection switches. `--workspace` keeps the feature
# resolution of the first run, so only our crates that the switch touches build again (with
# `-p rulebox-cli` every dependency, wasmtime among them, built a second time: twice the disk).
# The third checks rulebox's Sigma detections against rsigma's on the whole SigmaHQ set, rule by
# rule, against `benches/golden/sigma_agree.txt` (about 80 s; says SKIPPED without the corpora).
test: targets
	$(CARGO) test --workspace
	$(CARGO) test --workspace --features rulebox-cli/fault-injection --test agent --test controller --test fleet_e2e
	$(CARGO) test --workspace --bench sigma_agree

# The `rulebox` binary for use outside the checkout: into ~/.cargo/bin, or PREFIX/bin.
install: targets
	$(CARGO) install --locked --path cli $(if $(PREFIX),--root $(PREFIX))

lint: targets
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --features rulebox-cli/fault-injection --all-targets -- -D warnings

bench: targets
	$(CARGO) bench -p rulebox-benches

ci: lint test
