#!/usr/bin/env bash
# Installs the MinIO server the S3 tests run against, once per machine.
# Idempotent: does nothing when $COFFER_TOOLS/minio exists and runs.
set -euo pipefail

MINIO_MODULE="github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
COFFER_TOOLS="${COFFER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-dev/bin}"
bin="$COFFER_TOOLS/minio"

if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
	echo "install-minio: $bin already installed, skipping"
	exit 0
fi

echo "install-minio: installing $MINIO_MODULE into $COFFER_TOOLS (a few minutes the first time)"
mkdir -p "$COFFER_TOOLS"
GOBIN="$COFFER_TOOLS" go install "$MINIO_MODULE"

if ! "$bin" --version >/dev/null 2>&1; then
	echo "install-minio: $bin was installed but does not run" >&2
	exit 1
fi
echo "install-minio: installed $bin"
