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
go build -o "$BIN/xapisim" ./cmd/xapisim

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

step "9. A XenServer VM, two nights: a simulated pool (xapisim) with a VM of two disks and a CD"
SIM=$WORK/pool
rm -rf "$SIM"
printf 'demo pool password\n' > "$WORK/pool-password"
xapisim() { "$BIN/xapisim" "$@" --state "$SIM"; }
xapisim init --password-file "$WORK/pool-password" >/dev/null
xapisim vm create app01 --disk 256M --disk 64M --cd >/dev/null
"$BIN/diskgen" gen --size 256MiB --seed 3 "$WORK/app0.img"
"$BIN/diskgen" gen --size 64MiB --seed 4 "$WORK/app1.img"
xapisim disk import app01 0 "$WORK/app0.img"
xapisim disk import app01 1 "$WORK/app1.img"
"$BIN/xapisim" serve --state "$SIM" --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 2>"$WORK/xapisim.log" &
SIMPID=$!
trap 'kill $SIMPID 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -s "$SIM/serve.json" ] && break; sleep 0.05; done
URL=$(sed -n 's/.*"url": *"\([^"]*\)".*/\1/p' "$SIM/serve.json")
FP=$(sed -n 's/.*"fingerprint": *"\([^"]*\)".*/\1/p' "$SIM/serve.json")
xen=(--xen "$URL" --xen-password-file "$WORK/pool-password" --xen-fingerprint "$FP" --vm app01)
coffer backup "${xen[@]}" --json > "$WORK/x1.json"
echo "night 1: $(grep -o '"read":"[a-z]*","reason":"[^"]*"' "$WORK/x1.json" | head -1)"
xapisim disk write app01 0 --random-blocks 1 --seed 7
xapisim disk write app01 1 --random-blocks 1 --seed 8
coffer backup "${xen[@]}" --json > "$WORK/x2.json"
tail -n 1 "$WORK/x2.json" > "$WORK/xs2.json"
for n in 0 1; do
  xapisim disk export app01 $n "$WORK/app$n.now"
  rm -f "$WORK/app$n.restored"
  coffer restore latest --name app01 --disk $n --to "$WORK/app$n.restored" >/dev/null
  cmp "$WORK/app$n.now" "$WORK/app$n.restored"
done
kill $SIMPID; wait $SIMPID 2>/dev/null || true
sum() { grep -o "\"$1\":[0-9]*" "$WORK/xs2.json" | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }'; }
awk -v read="$(sum bytes_read)" -v changed="$(sum changed_blocks)" 'BEGIN {
  printf "VM night 2 (changed block tracking): %d changed 64 KiB blocks, read %.1f MiB of the VM'"'"'s 320 MiB (%.2f%%)\n", changed, read/1048576, 100*read/(320*1048576)
}'
echo "both disks of the VM restored byte-identical to the disks as they are now"
echo "repository: $(du -sh "$WORK/repo" | cut -f1) on disk for two nights of a $SIZE disk and of the VM"
echo "work directory: $WORK (delete it when done)"
