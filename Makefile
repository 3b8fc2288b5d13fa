# signet: `make run` starts signet, `make test` runs the whole test suite.
CARGO ?= cargo
# `make run` starts the webhook with no cluster: self-signed TLS on 127.0.0.1:8443 and the example
# policy folder (watched for changes). Override with e.g. `make run ARGS="verify IMAGE --policy-dir DIR"`.
ARGS ?= --log info webhook --tls-self-signed --listen 127.0.0.1:8443 --policy-dir examples/policies
# `make fuzz` runs every fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS each, with the nightly
# toolchain cargo-fuzz needs. New inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET;
# the repository's own fixtures are read as extra seed corpora (not for review_structured, whose
# input chooses edits of reviews it embeds, not JSON). E.g. `make fuzz FUZZ_SECONDS=600
# FUZZ_TARGETS=review`.
FUZZ_SECONDS ?= 60
FUZZ_CARGO ?= cargo +nightly
FUZZ_TARGETS ?= reference payload review review_differential review_structured registry_event policy_yaml envelopes
# `make image` builds the container image without docker (scripts/image.py): the release binary plus the
# Debian files it needs, as an OCI image layout in IMAGE_LAYOUT, named IMAGE (the chart's default image).
# `make image PUSH=host/repo:tag` also pushes it (REGISTRY_USERNAME / REGISTRY_PASSWORD when the registry
# wants them; INSECURE=1 for plain HTTP). With docker, podman or buildah: `podman build -f Containerfile .`
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= ghcr.io/signet-dev/signet:$(VERSION)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
IMAGE_LAYOUT ?= $(TARGET_DIR)/image/signet
PUSH ?=
INSECURE ?=

.PHONY: run test lint fmt bench generate demo fuzz image

run:
	$(CARGO) run --quiet -- $(ARGS)

test:
	./scripts/test.sh

# `make lint` also checks that the fuzz targets build against the library's current API (on
# stable: only running them needs nightly); a change of a public type once broke one unseen.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --lib --quiet
	@command -v c++ >/dev/null || ./scripts/test-deps.sh
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins --locked --quiet

fmt:
	$(CARGO) fmt

bench:
	$(CARGO) bench

image:
	$(CARGO) build --release --locked
	python3 scripts/image.py build --binary $(TARGET_DIR)/release/signet --layout $(IMAGE_LAYOUT) --name $(IMAGE)
	$(if $(PUSH),python3 scripts/image.py push --layout $(IMAGE_LAYOUT) --to $(PUSH) $(if $(INSECURE),--insecure))

# `make demo` runs the whole chain on this machine (scripts/demo.sh): a registry with notifications, the
# signer, the webhook, one signed and one unsigned image, an allow and a denial printed with their reasons.
demo:
	./scripts/demo.sh

generate:
	$(CARGO) run --quiet -- crd > crds/signet.dev.yaml
	cp crds/signet.dev.yaml charts/signet/crds/signet.dev.yaml

fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/payload
	cp tests/fixtures/cosign-*.example.json fuzz/corpus/payload/
	cd fuzz && for target in $(FUZZ_TARGETS); do \
		case $$target in \
			review|review_differential) seeds=../tests/fixtures/admission;; \
			registry_event) seeds=../src/signer/testdata;; \
			policy_yaml) seeds=../examples/policies;; \
			envelopes) seeds=../tests/fixtures/notation;; \
			*) seeds=;; \
		esac; \
		mkdir -p corpus/$$target && \
		$(FUZZ_CARGO) fuzz run $$target corpus/$$target $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 || exit 1; \
	done
