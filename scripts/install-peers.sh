#!/usr/bin/env bash
# Installs the benchmark peers into $COFFER_TOOLS (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/coffer-dev/bin) as restic-VERSION and
# kopia-VERSION, the versions set in integration/bench/peers.env (the one
# place they are set; the bench reads the same file). Versioned file names
# keep an older peer from being benchmarked by accident: the bench runs only
# the file of the version it was built for, and checks what it prints.
# Idempotent: a peer already installed at the right version is kept.
# Both are built from source with the Go toolchain; nothing is committed.
# It also installs e2fsprogs (apt-get, as root) when mkfs.ext4, debugfs or
# e2fsck is missing: the bench's real ext4 disk needs them.
set -euo pipefail

# shellcheck source=../integration/bench/peers.env
source "$(dirname "${BASH_SOURCE[0]}")/../integration/bench/peers.env"
COFFER_TOOLS="${COFFER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-dev/bin}"
mkdir -p "$COFFER_TOOLS"

log() { echo "install-peers: $*" >&2; }

install_restic() {
	local bin="$COFFER_TOOLS/restic-$RESTIC_VERSION"
	if [[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -q "restic $RESTIC_VERSION "; then
		log "restic $RESTIC_VERSION already installed at $bin"
		return
	fi
	log "building restic $RESTIC_VERSION (a few minutes)"
	local t0=$SECONDS
	# go install names the binary restic; it is built into a directory of
	# its own and renamed, so that no unversioned restic lands in the tools.
	local gobin
	gobin="$(mktemp -d "$COFFER_TOOLS/.restic-build.XXXXXX")"
	if ! GOBIN="$gobin" go install -trimpath \
		"github.com/restic/restic/cmd/restic@v$RESTIC_VERSION"; then
		rm -rf "$gobin"
		log "building restic $RESTIC_VERSION failed"
		exit 1
	fi
	mv "$gobin/restic" "$bin"
	rmdir "$gobin"
	log "restic $RESTIC_VERSION installed in $((SECONDS - t0))s"
}

# kopia cannot be installed with `go install ...@vX.Y.Z`: the module proxy
# refuses its version list. It is built from a throwaway module that requires
# it, kept in the cache next to the binaries.
install_kopia() {
	local bin="$COFFER_TOOLS/kopia-$KOPIA_VERSION"
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

# The bench's real VM disk is made with mkfs.ext4 -d and changed with
# debugfs, checked with e2fsck: all from e2fsprogs, in /sbin on Debian.
install_e2fsprogs() {
	local missing=()
	for p in mkfs.ext4 debugfs e2fsck; do
		PATH="$PATH:/usr/sbin:/sbin" command -v "$p" >/dev/null || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		log "e2fsprogs already installed"
		return
	fi
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
		log "${missing[*]} missing: install e2fsprogs as root (apt-get install -y e2fsprogs); the bench skips its ext4 disk without it"
		return
	fi
	log "installing e2fsprogs (${missing[*]} missing)"
	apt-get install -y e2fsprogs >/dev/null || { apt-get update >/dev/null && apt-get install -y e2fsprogs >/dev/null; }
}

case "${1:-all}" in
restic) install_restic ;;
kopia) install_kopia ;;
e2fsprogs) install_e2fsprogs ;;
all)
	install_restic
	install_kopia
	install_e2fsprogs
	;;
*)
	echo "usage: $0 [restic|kopia|e2fsprogs|all]" >&2
	exit 2
	;;
esac
