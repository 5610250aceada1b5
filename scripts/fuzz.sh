#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for a short time, one after
# another, and stops at the first failure. A failing input is saved by Go
# under the package's testdata/fuzz/<Target>/; commit it with the fix so it
# stays a regression test (plain `go test` replays it).
#
#   FUZZTIME   time per target (default 10s), any `go test -fuzztime` value
#   GO         go command (default go)
#
# Arguments, if any, restrict the run to those packages (./internal/pack ...).
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}

# Targets are found in the source rather than listed here, so a new target
# is fuzzed without editing this script.
if [ $# -gt 0 ]; then
	dirs=("$@")
else
	mapfile -t dirs < <(find . -name '*_test.go' -not -path './.git/*' -not -path '*/testdata/*' \
		-exec grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' {} + | xargs -r -n1 dirname | sort -u)
fi
if [ ${#dirs[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

count=0
for dir in "${dirs[@]}"; do
	pkg=./${dir#./}
	mapfile -t targets < <(grep -ho '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' "$pkg"/*_test.go |
		sed 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/' | sort -u)
	for target in "${targets[@]}"; do
		echo "=== $pkg $target ($FUZZTIME)"
		if ! "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"; then
			echo "fuzz.sh: $target in $pkg FAILED; the failing input is under $pkg/testdata/fuzz/$target/" >&2
			exit 1
		fi
		count=$((count + 1))
	done
done
echo "fuzz.sh: $count targets passed ($FUZZTIME each)"
