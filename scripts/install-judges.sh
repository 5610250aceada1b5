#!/usr/bin/env bash
# Installs the independent judges: the NBD tools the tests of internal/nbd run
# against, qemu-img (qemu-utils), nbdinfo and nbdcopy (libnbd-bin) and nbdkit,
# and rclone, which the benchmark's seed import is measured beside; from
# Debian's packages with apt-get, when a command is missing and we are root.
# It runs apt-get update only when the first install fails (stale lists).
# Not root: it prints what to install and exits non-zero.
# Idempotent: nothing happens when every command is there.
set -euo pipefail

log() { echo "install-judges: $*" >&2; }

declare -A package_of=(
	[qemu-img]=qemu-utils
	[nbdinfo]=libnbd-bin
	[nbdcopy]=libnbd-bin
	[nbdkit]=nbdkit
	[rclone]=rclone
)

missing=()
for cmd in qemu-img nbdinfo nbdcopy nbdkit rclone; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		pkg="${package_of[$cmd]}"
		[[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	log "qemu-img, nbdinfo, nbdcopy, nbdkit and rclone are installed"
	exit 0
fi

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	log "missing: ${missing[*]}; install them, e.g. sudo apt-get install ${missing[*]}"
	exit 1
fi

log "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
	log "apt-get install failed; updating the package lists and trying again"
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
fi
log "installed ${missing[*]}"
