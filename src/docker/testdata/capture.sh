#!/bin/bash
# Captures the testdata beside this script from a private dockerd (Docker 20.10 from Debian)
# started inside a network namespace of its own, as shared/reference/real-dockerd-in-a-netns.md
# shows. Needs root, dockerd, the docker client, busybox-static and python3 (for byte-exact
# dumps of what the daemon writes on the socket). Run: sudo bash src/docker/testdata/capture.sh
# Never touches the machine's own Docker: every call goes to $D/docker.sock.
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
NS=eg-$$-dk
D=$(mktemp -d /tmp/eg-dk.XXXXXX)
SOCK=$D/docker.sock
export DOCKER_HOST=unix://$SOCK

stop_dockerd() {
    if [ -f "$D/dockerd.pid" ]; then
        local pid; pid=$(cat "$D/dockerd.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$D/dockerd.pid"
    fi
}
cleanup() {
    docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
    stop_dockerd
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    umount -R "$D"/data 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT

# raw NOTE OUTFILE PATH: the exact bytes dockerd answers to `GET PATH`, after a comment header.
cat > "$D/raw.py" <<'PY'
import socket, sys, time
sock_path, note, out, path = sys.argv[1:5]
stream = len(sys.argv) > 5
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
s.sendall(f"GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
data, reads, t0 = b"", [], time.monotonic()
s.settimeout(float(sys.argv[5]) if stream else 10)
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        reads.append((time.monotonic() - t0, len(b)))
        data += b
except socket.timeout:
    pass
with open(out, "wb") as f:
    for line in note.split("\n"):
        f.write(f"# {line}\n".encode())
    f.write(data)
if stream:
    with open(out + ".reads", "w") as f:
        for t, n in reads:
            f.write(f"{t:.6f} {n}\n")
PY
raw() { python3 "$D/raw.py" "$SOCK" "$@"; }

start_dockerd() {
    echo "$1" > "$D/daemon.json"
    nsenter --net=/run/netns/"$NS" setsid dockerd --config-file "$D/daemon.json" --data-root "$D/data" \
        --exec-root "$D/exec" -H "unix://$SOCK" --pidfile "$D/dockerd.pid" >>"$D/dockerd.log" 2>&1 &
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null
    local img; img=$(mktemp -d); mkdir -p "$img/bin"; cp /bin/busybox "$img/bin/"
    for a in sh nc ping sleep echo cat ip wget; do ln -s busybox "$img/bin/$a"; done
    tar -C "$img" -c . | docker import - egprobe:latest >/dev/null
    rm -rf "$img"
}

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
VERSION=$(dockerd --version)
EVENTS='/events?filters=%7B%22type%22%3A%7B%22container%22%3Atrue%2C%22network%22%3Atrue%7D%7D'

# --- IPv4 only: default bridge, a labelled user-defined network, a network naming its bridge,
# a compose-style container, connect/disconnect while running, stop/kill/rm.
start_dockerd '{"storage-driver":"vfs"}'
V4="$VERSION, private daemon in a netns, daemon.json {\"storage-driver\":\"vfs\"} (IPv4 only)"
raw "$V4
GET /version" "$OUT/version.http" /version
raw "$V4
GET $EVENTS (type=container,network), read for the whole scenario of capture.sh's IPv4 part:
network create egnet (labels) and named (bridge.name egbr1); run web -p 8080:80 on bridge;
run proj-api-1 (compose labels) on egnet; network connect named web; disconnect; stop -t 1 web;
kill proj-api-1; rm both; network rm both. Arrival times of each read() are in events-v4.http.reads" \
    "$OUT/events-v4.http" "$EVENTS" 40 &
EVPID=$!
sleep 1
docker network create --label egress-guard.allow=203.0.113.0/24,53/udp --label team=blue egnet >/dev/null
docker network create -o com.docker.network.bridge.name=egbr1 named >/dev/null
docker run -d --name web -p 8080:80 egprobe sh -c 'while true; do echo ok | nc -l -p 80; done' >/dev/null
docker run -d --name proj-api-1 --network egnet --label com.docker.compose.project=proj \
    --label com.docker.compose.service=api --label egress-guard.allow=198.51.100.7 egprobe sleep 1000 >/dev/null
docker network connect named web
sleep 0.5
raw "$V4
GET /containers/json with web (bridge + named) and proj-api-1 (egnet) running" "$OUT/containers-v4.http" /containers/json
raw "$V4
GET /containers/web/json: on bridge and named, -p 8080:80" "$OUT/inspect-web-v4.http" /containers/web/json
raw "$V4
GET /containers/proj-api-1/json: compose labels, on egnet" "$OUT/inspect-compose-v4.http" /containers/proj-api-1/json
raw "$V4
GET /networks: bridge, host, none, egnet (labels), named (bridge.name option)" "$OUT/networks-v4.http" /networks
raw "$V4
GET /networks/egnet" "$OUT/network-egnet-v4.http" /networks/egnet
raw "$V4
GET /containers/nosuch/json: a daemon error" "$OUT/error-404.http" /containers/nosuch/json
docker network disconnect named web
docker stop -t 1 web >/dev/null
docker kill proj-api-1 >/dev/null
docker rm web proj-api-1 >/dev/null
docker network rm egnet named >/dev/null
wait $EVPID || true
docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true
stop_dockerd
umount -R "$D/data" 2>/dev/null || true
rm -rf "$D/data" "$D/exec"

# --- IPv6 on: the default bridge with fixed-cidr-v6 and a dual-stack user-defined network.
start_dockerd '{"storage-driver":"vfs","experimental":true,"ipv6":true,"ip6tables":true,"fixed-cidr-v6":"fd00:17::/64"}'
V6="$VERSION, private daemon in a netns, daemon.json {\"storage-driver\":\"vfs\",\"experimental\":true,
\"ipv6\":true,\"ip6tables\":true,\"fixed-cidr-v6\":\"fd00:17::/64\"}"
docker network create --ipv6 --subnet 172.31.0.0/24 --subnet fd00:18::/64 --label egress-guard.allow=2001:db8::53 egnet6 >/dev/null
docker run -d --name web6 egprobe sleep 1000 >/dev/null
docker run -d --name dual --network egnet6 egprobe sleep 1000 >/dev/null
raw "$V6
GET /containers/json: web6 on bridge (fixed-cidr-v6), dual on egnet6 (--ipv6, two subnets)" "$OUT/containers-v6.http" /containers/json
raw "$V6
GET /containers/dual/json" "$OUT/inspect-dual-v6.http" /containers/dual/json
raw "$V6
GET /networks: bridge with IPv6, egnet6 dual-stack" "$OUT/networks-v6.http" /networks
echo "captured into $OUT"
