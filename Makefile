# signet: `make run` starts signet, `make test` runs the whole test suite.
CARGO ?= cargo
# `make run` starts the webhook with no cluster: self-signed TLS on 127.0.0.1:8443 and the example
# policy folder (watched for changes). Override with e.g. `make run ARGS="verify IMAGE --policy-dir DIR"`.
ARGS ?= --log info webhook --tls-self-signed --listen 127.0.0.1:8443 --policy-dir examples/policies

.PHONY: run test lint fmt bench generate demo

run:
	$(CARGO) run --quiet -- $(ARGS)

test:
	./scripts/test.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --lib --quiet

fmt:
	$(CARGO) fmt

bench:
	$(CARGO) bench

generate:
	$(CARGO) run --quiet -- crd > crds/signet.dev.yaml
	cp crds/signet.dev.yaml charts/signet/crds/signet.dev.yaml
