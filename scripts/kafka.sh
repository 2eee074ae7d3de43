#!/usr/bin/env bash
# A real Kafka-protocol broker for the tests: noida-db from PyPI (a prebuilt binary that speaks the Kafka
# protocol, groups, committed offsets, idempotent produce and transactions included), run with only its
# Kafka service, bound to 127.0.0.1, with a fresh data dir on every start.
#
#   kafka.sh install       install the pinned broker (if needed) and print the binary's path
#   kafka.sh start [PORT]  start a broker (default: a free port); prints FSQL_KAFKA_BROKERS=127.0.0.1:PORT
#   kafka.sh stop          stop the broker started last and delete its data dir (no-op when none runs)
#   kafka.sh status        say whether it runs (exit 0) or not (exit 1)
#
# FSQL_KAFKA_VENV and FSQL_KAFKA_STATE override where the broker is installed and where the running
# broker's pid, port and data dir are recorded. stdout carries only each command's answer (the path, the
# FSQL_KAFKA_BROKERS line, the status); progress and errors go to stderr, so `$(kafka.sh start)` is just
# the address.
set -euo pipefail

NOIDA_VERSION=0.2.3
VENV="${FSQL_KAFKA_VENV:-$HOME/.cache/fsql-kafka/venv}"
STATE="${FSQL_KAFKA_STATE:-$HOME/.cache/fsql-kafka/state}"
START_TIMEOUT=20 # seconds for the broker to answer a metadata request
STOP_TIMEOUT=10  # seconds between SIGTERM and SIGKILL
HOST=127.0.0.1   # never listen beyond this machine

log() { echo "kafka.sh: $*" >&2; }

# Sets BIN to the broker binary, installing noida-db into its own venv first unless the pinned version
# is already there (one python start-up when it is, so it is cheap to call every time).
install_broker() {
  local py="$VENV/bin/python"
  if ! "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version("noida-db") != sys.argv[1])' \
    "$NOIDA_VERSION" >/dev/null 2>&1; then
    log "installing noida-db==$NOIDA_VERSION into $VENV"
    mkdir -p "$(dirname "$VENV")"
    # --clear: a venv left broken by an interrupted install is rebuilt rather than reused.
    "$py" -c '' >/dev/null 2>&1 || python3 -m venv --clear "$VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "noida-db==$NOIDA_VERSION" >&2
  fi
  # The wheel ships the binary inside the package folder, and not always with its exec bit.
  BIN="$("$py" -c 'import noida_db, os; print(os.path.dirname(noida_db.__file__))')/noida-db"
  [ -f "$BIN" ] || { log "no binary at $BIN"; exit 1; }
  chmod +x "$BIN"
}

# State file: one key=value a line (pid, port, data_dir); read without sourcing it.
state_get() { [ ! -f "$STATE" ] || sed -n "s/^$1=//p" "$STATE"; }

# True when PID is a live (not zombie) noida-db process: guards against a pid reused by something else.
is_broker() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  grep -qa noida-db "/proc/$pid/cmdline" 2>/dev/null
}

# A free TCP port on 127.0.0.1, as chosen by the kernel (tiny race until the broker binds it).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Succeeds when process PID itself listens on HOST:PORT (not some other process already holding the
# port: the broker then exits with "port is already in use"), and a Kafka Metadata request (v0) there is
# answered with HOST:PORT among the brokers, the address clients reconnect to. Plain python3, no client.
broker_ready() {
  python3 - "$1" "$HOST" "$2" <<'EOF' >/dev/null 2>&1
import os, socket, struct, sys
pid, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
socks = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if link.startswith("socket:["):
        socks.add(link[8:-1])
with open("/proc/net/tcp") as f:
    rows = [line.split() for line in f.readlines()[1:]]
# columns: local address (hex ip:port), state (0A = LISTEN), ..., inode (10th)
if not any(r[3] == "0A" and int(r[1].split(":")[1], 16) == port and r[9] in socks for r in rows):
    sys.exit(1)
s = socket.create_connection((host, port), timeout=1)
s.settimeout(1)
cid = b"fsql-kafka-sh"
# header: api_key 3 (Metadata), version 0, correlation id 42, client id; body: [] = all topics
req = struct.pack(">hhih", 3, 0, 42, len(cid)) + cid + struct.pack(">i", 0)
s.sendall(struct.pack(">i", len(req)) + req)
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit(1)
        b += c
    return b
body = recv(struct.unpack(">i", recv(4))[0])
corr, n = struct.unpack_from(">ii", body, 0)
off, brokers = 8, []
for _ in range(n):
    _node, hl = struct.unpack_from(">ih", body, off)
    off += 6
    h = body[off:off + hl].decode()
    off += hl
    brokers.append((h, struct.unpack_from(">i", body, off)[0]))
    off += 4
sys.exit(0 if corr == 42 and (host, port) in brokers else 1)
EOF
}

cmd_stop() {
  [ -f "$STATE" ] || { log "no broker running"; return 0; }
  local pid data i
  pid="$(state_get pid)"
  data="$(state_get data_dir)"
  if is_broker "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      is_broker "$pid" || break
      sleep 0.1
    done
    if is_broker "$pid"; then
      log "broker $pid ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped broker $pid"
  fi
  # Only ever delete a dir this script created (mktemp pattern below), whatever the state file says.
  case "$data" in
    */fsql-kafka.*) rm -rf -- "$data" ;;
  esac
  rm -f -- "$STATE"
}

cmd_start() {
  local port="${1:-}" data pid deadline
  if [ -n "$port" ] && ! [[ "$port" =~ ^[0-9]+$ ]]; then
    log "bad port: $port"
    exit 2
  fi
  install_broker
  # One broker per state file: a broker left by a killed run is replaced, not leaked.
  if [ -f "$STATE" ]; then
    ! is_broker "$(state_get pid)" || log "replacing the broker left running in $STATE"
    cmd_stop
  fi
  [ -n "$port" ] || port="$(free_port)"
  data="$(mktemp -d "${TMPDIR:-/tmp}/fsql-kafka.XXXXXX")"
  # Background, stdin/stdout/stderr detached (the log goes to the data dir) so `$(kafka.sh start)`
  # returns; non-interactive bash makes it ignore SIGINT, and `stop` (or test.sh's trap) ends it.
  "$BIN" start --only kafka --kafka-port "$port" --host "$HOST" --data-dir "$data" \
    </dev/null >"$data/broker.log" 2>&1 &
  pid=$!
  # Recorded at once, so `stop` can clean up even if this script is interrupted while waiting.
  mkdir -p "$(dirname "$STATE")"
  printf 'pid=%s\nport=%s\ndata_dir=%s\n' "$pid" "$port" "$data" >"$STATE"
  deadline=$((SECONDS + START_TIMEOUT))
  until broker_ready "$pid" "$port"; do
    if ! is_broker "$pid" || [ "$SECONDS" -ge "$deadline" ]; then
      if is_broker "$pid"; then
        log "broker did not answer on $HOST:$port within ${START_TIMEOUT}s; its log:"
      else
        log "broker exited before answering on $HOST:$port; its log:"
      fi
      cat "$data/broker.log" >&2 || true
      cmd_stop
      exit 1
    fi
    sleep 0.1
  done
  log "broker $pid on $HOST:$port, data in $data"
  echo "FSQL_KAFKA_BROKERS=$HOST:$port"
}

cmd_status() {
  local pid
  pid="$(state_get pid)"
  if is_broker "$pid"; then
    echo "running: pid $pid, FSQL_KAFKA_BROKERS=$HOST:$(state_get port), data dir $(state_get data_dir)"
  else
    echo "not running"
    return 1
  fi
}

case "${1:-}" in
  install)
    install_broker
    echo "$BIN"
    ;;
  start)
    shift
    cmd_start "$@"
    ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 install | start [PORT] | stop | status" >&2
    exit 2
    ;;
esac
