#!/bin/bash
# Captures testdata/start/ from a private dockerd (Docker 20.10 from Debian, IPv6 on) started
# inside a network namespace of its own, as shared/reference/real-dockerd-in-a-netns.md shows:
# the /events stream while labelled containers start, restart, join and leave networks, and what
# dockerd answers at the very moment each event is read: `GET /networks/ID` and the container
# list filtered by id at each `network connect`, `GET /containers/ID/json` at each `start`.
# Needs root, dockerd, the docker client, busybox-static and python3. Never touches the
# machine's own Docker: every call goes to $D/docker.sock.
# Run: sudo bash src/docker/testdata/capture-start.sh
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)/start
NS=eg-$$-dk
D=$(mktemp -d /tmp/eg-dk.XXXXXX)
SOCK=$D/docker.sock
export DOCKER_HOST=unix://$SOCK DOCKER_CONFIG=$D/client

cleanup() {
    docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
    if [ -f "$D/dockerd.pid" ]; then
        local pid; pid=$(cat "$D/dockerd.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    umount -R "$D"/exec/netns/* "$D"/data 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT

# Subscribes to events and writes, for every event, the answers to the requests egress-guard's
# follower may make at that moment, each as the exact bytes dockerd sent (after a `# ` header).
cat > "$D/recorder.py" <<'PY'
import json, socket, sys, urllib.parse
sock_path, out, note = sys.argv[1:4]

def raw(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b

def save(name, header, data):
    with open(f"{out}/{name}", "wb") as f:
        for line in (note + "\n" + header).split("\n"):
            f.write(f"# {line}\n".encode())
        f.write(data)

events = "/events?filters=" + urllib.parse.quote(json.dumps({"type": {"container": True, "network": True}}), safe="")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
s.sendall(f"GET {events} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
stream, buf, connects, starts = b"", b"", 0, 0
print("ready", flush=True)
while True:
    b = s.recv(65536)
    if not b:
        break
    stream += b
    buf += b
    while b"\n" in buf:
        line, _, buf = buf.partition(b"\n")
        if not line.strip().startswith(b"{"):
            continue
        e = json.loads(line)
        kind, action, actor = e["Type"], e["Action"], e["Actor"]
        if (kind, action) == ("network", "connect"):
            connects += 1
            cid, net = actor["Attributes"]["container"], actor["Attributes"]["name"]
            save(f"connect-{connects}-network.http", f"GET /networks/{actor['ID']} sent as soon as network connect #{connects} ({net}) was read", raw(f"/networks/{actor['ID']}"))
            flt = urllib.parse.quote(json.dumps({"id": [cid]}), safe="")
            save(f"connect-{connects}-summary.http", f"GET /containers/json?all=1&filters={{\"id\":[ID]}} sent right after it", raw(f"/containers/json?all=1&filters={flt}"))
        elif (kind, action) == ("container", "start"):
            starts += 1
            save(f"start-{starts}-inspect.http", f"GET /containers/ID/json sent as soon as container start #{starts} ({actor['Attributes']['name']}) was read", raw(f"/containers/{actor['ID']}/json"))
        elif (kind, action) == ("network", "destroy"):
            save("events.http", "GET " + events + " (type=container,network) for the whole scenario of capture-start.sh", stream)
            sys.exit(0)
PY

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
CONFIG='{"storage-driver":"vfs","experimental":true,"ipv6":true,"ip6tables":true,"fixed-cidr-v6":"fd00:17::/64"}'
echo "$CONFIG" > "$D/daemon.json"
nsenter --net=/run/netns/"$NS" setsid dockerd --config-file "$D/daemon.json" --data-root "$D/data" \
    --exec-root "$D/exec" -H "unix://$SOCK" --pidfile "$D/dockerd.pid" >>"$D/dockerd.log" 2>&1 &
for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
img=$(mktemp -d); mkdir -p "$img/bin"; cp /bin/busybox "$img/bin/"; ln -s busybox "$img/bin/sleep"
tar -C "$img" -c . | docker import --change 'LABEL org.example.from-image=yes' - egprobe:latest >/dev/null
rm -rf "$img"

rm -rf "$OUT"; mkdir -p "$OUT"
NOTE="$(dockerd --version), private daemon in a netns, daemon.json $CONFIG; image egprobe has LABEL org.example.from-image=yes"
docker network create --ipv6 --subnet 172.31.1.0/24 --subnet fd00:31:1::/64 \
    --label egress-guard.allow=203.0.113.0/24 usernet >/dev/null
coproc REC { python3 "$D/recorder.py" "$SOCK" "$OUT" "$NOTE"; }
read -r ready <&"${REC[0]}"; [ "$ready" = ready ]
# The scenario: a labelled container on the default bridge, a compose-labelled one on the
# dual-stack user network, a restart of the latter, a network connect and disconnect while
# running, removal of both, removal of the network (which ends the capture).
docker run -d --name early --label egress-guard.allow=198.51.100.53/32:53/udp egprobe sleep 600 >/dev/null
docker run -d --name early6 --network usernet --label com.docker.compose.project=proj \
    --label com.docker.compose.service=api --label egress-guard.egress=open egprobe sleep 600 >/dev/null
docker restart -t 0 early6 >/dev/null
docker network connect usernet early
docker network disconnect usernet early
docker rm -f early early6 >/dev/null
docker network rm usernet >/dev/null
wait "$REC_PID"
echo "captured into $OUT:"; ls "$OUT"
