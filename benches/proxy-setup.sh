# Sourced by proxy-icount.sh and idle-bytes.sh: the nginx upstream
# answering `200 ok`, and proxy-bench's "mesh-proxy full" configuration.

# write_upstream_conf DIR PORT CONNECTIONS: DIR/nginx.conf, an nginx serving
# `200 ok` on 127.0.0.1:PORT.
write_upstream_conf() {
    local dir=$1 upstream=$2 conns=$3
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $conns; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  server { listen 127.0.0.1:$upstream; location / { return 200 "ok"; } }
}
EOF
}

# write_full_config FILE PROXY_PORT UPSTREAM_PORT: the full policy stack
# (least request, retries with a budget, outlier detection) for `backend`.
write_full_config() {
    local file=$1 proxy=$2 upstream=$3
    cat >"$file" <<EOF
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: bench}
spec:
  egress:
  - port: {number: $proxy, name: http}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backend}
spec:
  hosts: [backend.default.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {http: $upstream}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 10}
    retryBudget: {percent: 20, minRetryConcurrency: 3}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend}
spec:
  hosts: [backend]
  http:
  - route: [{destination: {host: backend}}]
    timeout: 5s
    retries: {attempts: 2, retryOn: "5xx,connect-failure,reset", perTryTimeout: 2s}
EOF
}
