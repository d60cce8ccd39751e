# kbak — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every pinned tool and test-bed version lives in e2e/versions.env.
include e2e/versions.env

VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# The image is tagged with the version, the name a kbak of that version
# gives its movers by default (deploy.MoverImage): a tag keeps letters,
# digits, _ . and -, the rest become -. VERSION=dev makes kbak.local/kbak:dev.
IMAGE_TAG  := $(shell printf '%s' '$(VERSION)' | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-128)
IMAGE      ?= kbak.local/kbak:$(or $(IMAGE_TAG),dev)
KBAK_CACHE ?= $(HOME)/.cache/kbak
E2E_DIR    ?= /var/tmp/kbak-e2e
export KBAK_CACHE

##@ Build
build: ## Build bin/kbak for this machine
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/kbak ./cmd/kbak

image: ## Write the kbak image tarball dist/kbak-image.tar, named kbak.local/kbak:VERSION (static binary, no Docker)
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags '$(LDFLAGS)' -o dist/kbak ./cmd/kbak
	cd e2e/testbed && go run ./mkimage --out ../../dist/kbak-image.tar --ref $(IMAGE) --file ../../dist/kbak:/kbak:0755 --entrypoint /kbak
	@echo "wrote dist/kbak-image.tar ($(IMAGE)); load it with: ctr -n k8s.io images import dist/kbak-image.tar"

##@ Test
check: lint test e2e ## Everything CI runs: lint, unit tests, end-to-end tests
	@echo "check: all passed"

test: s3-servers test-tools ## Unit and store conformance tests (starts real S3 servers)
	go test -count=1 ./...

test-tools: ## Install the Debian packages unit tests use: tmux, the terminal of the progress display's test
	@command -v tmux >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux; }

s3-servers:
	@KBAK_VERSITYGW=$$(e2e/s3-build.sh versitygw) && KBAK_MINIO=$$(e2e/s3-build.sh minio) && echo "S3 test servers: $$KBAK_VERSITYGW $$KBAK_MINIO"

e2e: ## Bring the test bed up, run the end-to-end tests, always bring it down
	@e2e/run.sh

e2e-build: ## Build (or find cached) every test-bed binary; the first time takes 20-50 minutes
	e2e/testbed/build.sh >/dev/null

e2e-up: ## Start the local test cluster and S3 server (see e2e/testbed/README.md)
	e2e/testbed/up.sh

e2e-smoke: ## Quick checks that the running test bed works (snapshots, S3 and API from pods)
	e2e/testbed/smoke.sh

e2e-down: ## Stop the test bed, leave the machine as it was, and check that it did
	e2e/testbed/down.sh

bench: s3-servers ## Go benchmarks, then kbak vs restic and kopia on one data set (BENCH_QUICK=1: a fast try)
	@[ "$${BENCH_QUICK:-0}" = 1 ] || go test -run '^$$' -bench . -benchmem ./internal/archive ./uploader
	e2e/bench.sh

million: ## Archive and extract 1 000 000 small files and report peak memory (slow)
	KBAK_MILLION=1 go test -count=1 -run TestMillionFiles -v -timeout 60m ./internal/archive/

demo: ## Bring up the test bed, deploy a demo StatefulSet, back it up, list backups
	e2e/demo.sh

##@ Quality
lint: ## gofmt, go vet, staticcheck and the package layering rules
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@e2e/layering.sh

clean: ## Remove build outputs (the version cache in $(KBAK_CACHE) stays)
	rm -rf bin dist

help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-10s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: build image check test test-tools s3-servers e2e e2e-build e2e-up e2e-smoke e2e-down bench million demo lint clean help
