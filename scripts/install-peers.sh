#!/usr/bin/env bash
# Installs the benchmark peers, restic 0.18.1 and kopia 0.22.3, into
# $COFFER_TOOLS (default ${XDG_CACHE_HOME:-$HOME/.cache}/coffer-dev/bin).
# Idempotent: a peer already installed at the right version is kept.
# Both are built from source with the Go toolchain; nothing is committed.
set -euo pipefail

RESTIC_VERSION=0.18.1
KOPIA_VERSION=0.22.3
COFFER_TOOLS="${COFFER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-dev/bin}"
mkdir -p "$COFFER_TOOLS"

log() { echo "install-peers: $*" >&2; }

install_restic() {
	local bin="$COFFER_TOOLS/restic"
	if [[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -q "restic $RESTIC_VERSION "; then
		log "restic $RESTIC_VERSION already installed at $bin"
		return
	fi
	log "building restic $RESTIC_VERSION (a few minutes)"
	local t0=$SECONDS
	GOBIN="$COFFER_TOOLS" go install -trimpath \
		"github.com/restic/restic/cmd/restic@v$RESTIC_VERSION"
	log "restic $RESTIC_VERSION installed in $((SECONDS - t0))s"
}

# kopia cannot be installed with `go install ...@v0.22.3`: the module proxy
# refuses its version list. It is built from a throwaway module that requires
# it, kept in the cache next to the binaries.
install_kopia() {
	local bin="$COFFER_TOOLS/kopia"
	if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "^$KOPIA_VERSION\b"; then
		log "kopia $KOPIA_VERSION already installed at $bin"
		return
	fi
	log "building kopia $KOPIA_VERSION (a few minutes)"
	local t0=$SECONDS
	local mod
	mod="$(dirname "$COFFER_TOOLS")/kopia-build-$KOPIA_VERSION"
	rm -rf "$mod"
	mkdir -p "$mod"
	(
		cd "$mod"
		cat >go.mod <<GOMOD
module coffer.invalid/kopiabuild

go 1.24
GOMOD
		go get "github.com/kopia/kopia@v$KOPIA_VERSION"
		go build -trimpath \
			-ldflags "-s -w -X github.com/kopia/kopia/repo.BuildVersion=$KOPIA_VERSION -X github.com/kopia/kopia/repo.BuildInfo=coffer-bench" \
			-o "$bin.tmp" github.com/kopia/kopia
		mv "$bin.tmp" "$bin"
	)
	log "kopia $KOPIA_VERSION installed in $((SECONDS - t0))s"
}

case "${1:-all}" in
restic) install_restic ;;
kopia) install_kopia ;;
all)
	install_restic
	install_kopia
	;;
*)
	echo "usage: $0 [restic|kopia|all]" >&2
	exit 2
	;;
esac
