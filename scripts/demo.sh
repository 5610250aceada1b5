#!/usr/bin/env bash
# make demo: Coffer's main job end to end on the embedded default store (a
# local directory). Generates a sample disk image, backs it up, changes about
# 1% of it, backs it up again, restores both, verifies, and summarises.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${DEMO_SIZE:-1GiB}
WORK=${DEMO_DIR:-$(mktemp -d -t coffer-demo-XXXXXX)}
mkdir -p "$WORK"
BIN=$WORK/bin
mkdir -p "$BIN"
go build -o "$BIN/coffer" ./cmd/coffer
go build -o "$BIN/diskgen" ./integration/tools/diskgen

# A demo passphrase. Real use: COFFER_PASSWORD from a secret store, or
# --password-file, or the prompt; never a command-line argument.
export COFFER_PASSWORD=${COFFER_PASSWORD:-demo passphrase, not for real use}
coffer() { "$BIN/coffer" --config "$WORK/coffer.yaml" "$@"; }
step() { printf '\n== %s\n' "$*"; }

step "1. A sample $SIZE disk image: half empty, a fifth random, the rest text-like"
"$BIN/diskgen" gen --size "$SIZE" --seed 1 "$WORK/night1.img"

step "2. coffer init: a new encrypted repository in a local directory"
rm -rf "$WORK/repo" "$WORK/coffer.yaml"
coffer init --repo "file://$WORK/repo"

step "3. coffer backup: the first night"
coffer backup --image "$WORK/night1.img" --name web01 --json > "$WORK/b1.json"
tail -n 1 "$WORK/b1.json" > "$WORK/s1.json"

step "4. The next night: about 1% of the 64 KiB blocks rewritten"
"$BIN/diskgen" mutate --seed 2 --changed 0.01 --insert 0 "$WORK/night1.img" "$WORK/night2.img"

step "5. coffer backup: the second night (only new chunks are stored)"
coffer backup --image "$WORK/night2.img" --name web01 --json > "$WORK/b2.json"
tail -n 1 "$WORK/b2.json" > "$WORK/s2.json"

step "6. coffer snapshots"
coffer snapshots

step "7. coffer restore: both nights, each verified against its recorded digest"
S1=$(sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p' "$WORK/s1.json")
rm -f "$WORK/restored1.img" "$WORK/restored2.img"
coffer restore "${S1:0:12}" --to "$WORK/restored1.img" --json > "$WORK/r1.json"
coffer restore latest --name web01 --to "$WORK/restored2.img" --json > "$WORK/r2.json"
cmp "$WORK/night1.img" "$WORK/restored1.img"
cmp "$WORK/night2.img" "$WORK/restored2.img"
echo "both restored images are byte-identical to their originals"

step "8. coffer check --read-data: every byte of every pack verified"
coffer check --read-data

step "Summary"
summarise() {
  # Pull numbers out of the JSON summaries without extra tools.
  field() { sed -n "s/.*\"$2\":\([0-9.e+]*\).*/\1/p" "$1"; }
  for n in 1 2; do
    f=$WORK/s$n.json
    awk -v night=$n -v size="$(field "$f" size)" -v read="$(field "$f" bytes_read)" \
        -v chunks="$(field "$f" chunks)" -v newc="$(field "$f" new_chunks)" \
        -v newb="$(field "$f" bytes_new)" -v stored="$(field "$f" bytes_stored_new)" \
        -v secs="$(field "$f" duration_seconds)" 'BEGIN {
      mib = 1048576
      printf "night %d backup: disk %.0f MiB, read %.0f MiB, %d chunks of which %d new (%.1f%% deduplicated),\n", night, size/mib, read/mib, chunks, newc, 100*(1-newc/chunks)
      printf "                new data %.1f MiB stored as %.1f MiB (%.2f%% of the disk), %.1f s, %.0f MiB/s\n", newb/mib, stored/mib, 100*stored/size, secs, size/mib/secs
    }'
  done
  for n in 1 2; do
    f=$WORK/r$n.json
    awk -v night=$n -v size="$(field "$f" size)" -v secs="$(field "$f" duration_seconds)" 'BEGIN {
      printf "night %d restore: %.0f MiB in %.1f s (%.0f MiB/s), verified\n", night, size/1048576, secs, size/1048576/secs
    }'
  done
}
summarise
echo "repository: $(du -sh "$WORK/repo" | cut -f1) on disk for two nights of a $SIZE disk"
echo "work directory: $WORK (delete it when done)"
