# Coffer — developer entry points. See README.md.
SHELL := /bin/bash
GO ?= go
# Tools the tests and the benchmark install (MinIO, restic, kopia) live here,
# outside the checkout, so a fresh clone on the same machine reuses them.
export COFFER_TOOLS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/coffer-dev/bin

.PHONY: build demo test test-short test-deploy bench lint fuzz minio peers judges clean

build:
	$(GO) build -o bin/coffer ./cmd/coffer
	$(GO) build -o bin/cofferd ./cmd/cofferd

# The main job end to end on the embedded default store (a local directory).
demo: build
	bash scripts/demo.sh

# Every test, including the S3 ones against a real MinIO started on loopback.
# -count=1: the integration tests build the coffer binary themselves, which
# the test cache cannot see, so cached results could be stale.
test: minio judges test-deploy lint
	COFFER_REQUIRE_JUDGES=1 COFFER_MINIO_BIN=$(COFFER_TOOLS)/minio $(GO) test -count=1 -timeout 25m ./...

# The linters the project uses: go vet, gofmt, staticcheck (installed
# into $(COFFER_TOOLS) the first time) and the layering test, which fails
# when an import runs against the arrows of ARCHITECTURE.md.
lint:
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/archtest
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	bash scripts/install-staticcheck.sh
	$(COFFER_TOOLS)/staticcheck ./...
	cd deploy/composetest && $(COFFER_TOOLS)/staticcheck ./...

# The deployment files (docker-compose.yml, deploy/) checked with the
# compose-spec parser and systemd-analyze, no Docker engine needed. A module of
# its own (deploy/composetest), so the parser stays out of the main go.mod.
test-deploy:
	cd deploy/composetest && $(GO) vet ./... && $(GO) test -count=1 ./...

# Unit tests only (no MinIO needed; S3 tests skip outside CI).
test-short:
	$(GO) test -short ./...

minio:
	bash scripts/install-minio.sh

# The independent NBD judges internal/nbd is tested against: qemu-img,
# nbdinfo, nbdcopy (libnbd) and nbdkit, installed with apt-get when missing.
judges:
	bash scripts/install-judges.sh

# The benchmark's peers, restic and kopia at the versions of
# integration/bench/peers.env (restic 0.19.1, kopia 0.23.1), installed as
# $(COFFER_TOOLS)/restic-VERSION and kopia-VERSION; and e2fsprogs (apt-get)
# when mkfs.ext4, debugfs or e2fsck is missing, for the real ext4 disk.
peers:
	bash scripts/install-peers.sh

# Coffer against restic 0.19.1 and kopia 0.23.1 on the same generated images
# (the reference mix and a real ext4 disk), with start-up cost per command;
# then a XenServer VM's nights with changed block tracking through xapisim.
# A smaller run: make bench BENCHFLAGS="--quick --targets local --peers restic"
bench: minio peers judges
	$(GO) run ./integration/bench $(BENCHFLAGS)

# A short run of every fuzz target.
fuzz:
	bash scripts/fuzz.sh

clean:
	rm -rf bin
