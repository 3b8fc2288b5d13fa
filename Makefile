# signet: `make run` starts signet, `make test` runs the whole test suite.
CARGO ?= cargo
ARGS ?= --help

.PHONY: run test lint fmt bench generate demo

run:
	$(CARGO) run --release -- $(ARGS)

test:
	./scripts/test-deps.sh
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

bench:
	$(CARGO) bench

generate:
	$(CARGO) run --quiet -- crd > crds/signet.dev.yaml
	cp crds/signet.dev.yaml charts/signet/crds/signet.dev.yaml
