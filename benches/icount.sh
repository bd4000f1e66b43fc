#!/usr/bin/env bash
# Instructions per request of `icount` cases, under callgrind: each case runs
# twice (N1 and N2 requests) and the difference of the totals over N2 - N1 is
# one request, start-up and set-up cancelled out. Load on the machine does not
# change these counts (repeat runs agree within a few instructions).
#
#   benches/icount.sh bare tower_retry mesh_retry_like_tower
#   ICOUNT_CLIENT_ADDR=1 benches/icount.sh bare tower_retry mesh_retry   # requests carry a ClientAddr
#
# Needs valgrind; builds the `icount` bench target first.
set -euo pipefail
N1=${N1:-2000}
N2=${N2:-12000}
bin=$(cargo bench -p benches --bench icount --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*icount[^"]*\)".*/\1/p' | tail -1)
out=$(mktemp -d)
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for case in "$@"; do
    a=$(count "$case" "$N1")
    b=$(count "$case" "$N2")
    echo "$case $(((b - a) / (N2 - N1)))"
done
rm -rf "$out"
