#!/usr/bin/env bash
# Instructions per request of the mesh-proxy binary itself, under callgrind:
# the proxy (one worker thread, proxy-bench's full policy stack) serves N1 and
# then N2 keep-alive GETs on one connection from a plain Python client, to an
# nginx upstream answering `200 ok`; the difference of the two totals over
# N2 - N1 is one request, start-up, config parsing and shutdown cancelled out.
# Counts do not move with load on the machine (repeat runs agree within a few
# instructions), so this compares two builds where proxy-bench's times drift.
#
#   benches/proxy-icount.sh target/release/mesh-proxy
#   OUT=/tmp/cg benches/proxy-icount.sh old-binary   # keep the callgrind files
#
# Needs valgrind, nginx and python3 (apt-get install valgrind nginx-light
# python3); uses 127.0.0.1:18190 (upstream) and :18193 (the proxy).
set -euo pipefail
. "$(dirname "$0")/proxy-setup.sh"
bin=$(realpath "${1:-target/release/mesh-proxy}")
N1=${N1:-1000}
N2=${N2:-6000}
dir=$(mktemp -d)
out=${OUT:-$dir}
mkdir -p "$out"
upstream=18190
proxy=18193

write_upstream_conf "$dir" "$upstream" 1024
nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
trap 'nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -s stop 2>/dev/null || true; [ -n "${OUT:-}" ] || rm -rf "$dir"' EXIT

write_full_config "$dir/full.yaml" "$proxy" "$upstream"

# N keep-alive GETs on one connection; fails on anything but 200.
cat >"$dir/client.py" <<'EOF'
import socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
req = b"GET / HTTP/1.1\r\nHost: backend\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
buf = b""
for _ in range(n):
    s.sendall(req)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode()
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.lower() == "content-length":
                    length = int(v)
            if len(buf) >= end + 4 + length:
                if not head.startswith("HTTP/1.1 200"):
                    sys.exit("unexpected answer: " + head)
                buf = buf[end + 4 + length:]
                break
        data = s.recv(65536)
        if not data:
            sys.exit("connection closed")
        buf += data
EOF

count() {
    local n=$1 log="$out/vg.$1.log"
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$n" \
        "$bin" run -c "$dir/full.yaml" --admin 127.0.0.1:0 --threads 1 >/dev/null 2>"$log" &
    local pid=$!
    for _ in $(seq 1 200); do
        grep -q "mesh-proxy: ready" "$log" && break
        sleep 0.2
    done
    python3 "$dir/client.py" "$n" "$proxy"
    kill -INT "$pid"
    wait "$pid" || true
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log"
}
a=$(count "$N1")
b=$(count "$N2")
echo "instructions per request: $(((b - a) / (N2 - N1)))"
[ -z "${OUT:-}" ] || echo "callgrind files in $out (callgrind_annotate $out/callgrind.$N2)"
