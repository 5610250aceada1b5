#!/usr/bin/env bash
# Installs staticcheck, the linter `make lint` runs beside go vet and gofmt,
# into $COFFER_TOOLS once per machine (about 30 s the first time).
# Idempotent: an installed binary of the pinned version is kept.
set -euo pipefail

STATICCHECK_VERSION=v0.8.2 # module honnef.co/go/tools; staticcheck 2026.2.2
COFFER_TOOLS="${COFFER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-dev/bin}"
bin="$COFFER_TOOLS/staticcheck"

if [[ -x "$bin" ]] && "$bin" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
	exit 0
fi
echo "install-staticcheck: installing honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION into $COFFER_TOOLS"
mkdir -p "$COFFER_TOOLS"
GOBIN="$COFFER_TOOLS" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
"$bin" -version
