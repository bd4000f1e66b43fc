#!/usr/bin/env bash
# Bytes of memory per idle keep-alive connection of a fresh mesh-proxy (one
# worker thread, proxy-bench's full-stack config, an nginx upstream): the
# growth of the proxy's VmRSS while N client connections, one GET each, are
# held open, over N. proxy-bench measures the same after its load runs, where
# the allocator's free lists absorb part of it; this measures a fresh process.
#
#   benches/idle-bytes.sh target/release/mesh-proxy
#   N=2000 benches/idle-bytes.sh old-binary
#
# Needs nginx and python3; uses 127.0.0.1:18190 (upstream) and :18193.
set -euo pipefail
. "$(dirname "$0")/proxy-setup.sh"
bin=$(realpath "${1:-target/release/mesh-proxy}")
N=${N:-1000}
dir=$(mktemp -d)
ulimit -n $((N + 1024))
write_upstream_conf "$dir" 18190 $((N + 1024))
write_full_config "$dir/full.yaml" 18193 18190
nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
"$bin" run -c "$dir/full.yaml" --admin 127.0.0.1:0 --threads 1 >/dev/null 2>"$dir/proxy.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
    grep -q "mesh-proxy: ready" "$dir/proxy.log" && break
    sleep 0.1
done
python3 - "$N" "$pid" <<'EOF'
import socket, sys, time
n, pid = int(sys.argv[1]), sys.argv[2]
def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
req = b"GET / HTTP/1.1\r\nHost: backend\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
before = rss_kib()
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", 18193))
    s.sendall(req)
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"ok")):
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        data += chunk
    held.append(s)
time.sleep(0.5)
print(f"bytes per idle connection: {(rss_kib() - before) * 1024 / n:.0f} ({n} connections)")
EOF
