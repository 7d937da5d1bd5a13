#!/usr/bin/env bash
# Soak benchmark (issue 14): three tenants' well-behaved workload, first alone (quiet), then
# with an abusive client of each class running alongside (idle and slowloris connections,
# a socket-token flood, big imports, voice sessions buffering audio, very long searches, a
# rate-limit hammer). Checks that the well-behaved tenants' p99 stays within 2x of the
# quiet run with no fd, memory or writer exhaustion, and appends a "soak" section to
# bench/RESULTS.md. See bench/soak/README.md.
#
# Usage: ./bench/soak/run.sh
# Environment overrides (defaults in brackets; README.md has them all):
#   SOAK_SECS      length of the abusive phase, seconds [600]
#   QUIET_SECS     length of the quiet phase, seconds [120]
#   RATE           req/s of each operation per tenant [20]
#   ABUSE          abusive classes to run [conns,flood,import,voice,search,hammer]
#   FLOW_BIN       a flow binary to run; skips the build
#   RESULTS        file to append to [bench/RESULTS.md]; "-" prints only
#   OUT_DIR        also keep the raw measurements (soak.json) and Flow's log here
#   and RAMP_SECS, RECOVER_SECS, SEED_LEADS, CLIENT_TIMEOUT_MS, SPREAD_ADDRS, IDLE_CONNS,
#   IDLE_ADDRS, SLOWLORIS_CONNS, SLOWLORIS_GAP_MS, FLOOD_KEYS, FLOOD_RATE, IMPORT_ROWS,
#   IMPORT_LOOPS, IMPORT_PAUSE_MS, VOICE_KEYS, VOICE_SESSIONS_PER_KEY, VOICE_KIBPS,
#   SEARCH_RATE, SEARCH_CHARS, HAMMER_RATE, HAMMER_LIMIT, MEM_SLACK_MIB, ABUSE_NICE
#
# All traffic is on the loopback interface, to 127.0.0.1 (from 127.0.0.x source addresses);
# every loop stops at its phase's deadline and every wait has a timeout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

OVERRIDES=(SOAK_SECS QUIET_SECS RAMP_SECS RECOVER_SECS RATE SEED_LEADS CLIENT_TIMEOUT_MS ABUSE
    SPREAD_ADDRS IDLE_CONNS IDLE_ADDRS SLOWLORIS_CONNS SLOWLORIS_GAP_MS FLOOD_KEYS FLOOD_RATE
    IMPORT_ROWS IMPORT_LOOPS IMPORT_PAUSE_MS VOICE_KEYS VOICE_SESSIONS_PER_KEY VOICE_KIBPS
    SEARCH_RATE SEARCH_CHARS HAMMER_RATE HAMMER_LIMIT MEM_SLACK_MIB ABUSE_NICE FLOW_BIN RESULTS OUT_DIR)
# The exact invocation, for the record (only the overrides that were given).
RUN_COMMAND=""
for var in "${OVERRIDES[@]}"; do
    if printenv "$var" >/dev/null; then
        RUN_COMMAND+="$var=$(printenv "$var") "
    fi
done
RUN_COMMAND+="./bench/soak/run.sh"
export RUN_COMMAND

export RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
FLOOD_KEYS=${FLOOD_KEYS:-5}
VOICE_KEYS=${VOICE_KEYS:-6}
export HAMMER_LIMIT=${HAMMER_LIMIT:-60}

# Per-request info logs cost measurable time; warnings and errors are what the report
# counts. The soak runs against its own fresh embedded database on 127.0.0.1: settings
# from the caller's environment must not point it at another database or address.
export RUST_LOG=warn
unset DATABASE_URL FLOW_DATABASE_URL FLOW_CONFIG FLOW_DATA_DIR FLOW_HOST FLOW_PORT

# The abusers hold thousands of sockets, and so does Flow: both need the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 8000)) || log "warning: open-file limit $(ulimit -n); the abusive clients need about 6,000"

command -v node >/dev/null || die "node is not installed"
if [[ ! -d $HERE/node_modules/ws ]]; then
    log "installing npm packages (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund)
fi

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes to tracked files mean the numbers are not those of $COMMIT.
if [[ $COMMIT != unknown ]] && ! git -C "$ROOT" diff --quiet HEAD -- . ':(exclude)bench/RESULTS.md' 2>/dev/null; then
    COMMIT+=" (with uncommitted changes)"
fi
export COMMIT

# shellcheck source=bench/flow-binary.sh
source "$ROOT/bench/flow-binary.sh"
flow_binary
# Flow reads every FLOW_* environment variable as a setting and rejects unknown ones:
# keep FLOW_BIN a shell variable only.
export -n FLOW_BIN
export FLOW_BIN_DESC

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flow-soak.XXXXXX")
DATA="$WORK/data"
mkdir -p "$DATA"
SERVER_PID=""
NODE_PID=""

cleanup() {
    local rc=$?
    if [[ -n $NODE_PID ]] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill -TERM "$NODE_PID" 2>/dev/null || true
    fi
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # Flow finishes in-flight requests on SIGTERM; give it 10 s, then force it.
        for _ in $(seq 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n ${OUT_DIR:-} && -s $WORK/server.log ]]; then
        mkdir -p "$OUT_DIR" && cp "$WORK/server.log" "$OUT_DIR/server.log"
    fi
    if [[ $rc -ne 0 && -s $WORK/server.log ]]; then
        log "last lines of the server's log:"
        tail -n 20 "$WORK/server.log" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
# Bash runs the EXIT trap on these only if they are trapped.
trap 'exit 130' INT
trap 'exit 143' TERM

flow() { "$FLOW_BIN" --data-dir "$DATA" "$@" 2>>"$WORK/cli.log"; }

# Prints a new key of tenant $1 named $2 with rate $3 per minute and grants $4.
new_key() {
    local out key
    out=$(flow key create --tenant "$1" --name "$2" --rate-limit "$3" --permissions "$4")
    key=$(awk '/^api key:/ {print $3; exit}' <<<"$out")
    [[ $key == flow_sk_* ]] || die "could not read the API key from: $out"
    printf '%s' "$key"
}

log "creating tenants A, B, C and their keys in $DATA"
declare -A SLUG WB
for t in A B C; do
    out=$(flow tenant create "Soak $t")
    SLUG[$t]=$(awk '/^tenant:/ {print $2; exit}' <<<"$out")
    [[ -n ${SLUG[$t]} ]] || die "could not read the tenant slug from: $out"
    # Far above what the workload sends: the soak measures Flow, not the 429s of its clients.
    WB[$t]=$(new_key "${SLUG[$t]}" well-behaved 1000000 '*')
done
# The abusers' keys, all in tenant A. All but the hammer's have the same huge limit, so
# that what stops them is the limit each class is about (socket caps, the audio budget,
# validation), not the rate limit.
json_list() { local IFS=,; printf '[%s]' "$*"; }
flood=() voice=()
for i in $(seq "$FLOOD_KEYS"); do flood+=("\"$(new_key "${SLUG[A]}" "flood-$i" 1000000 '*')\""); done
for i in $(seq "$VOICE_KEYS"); do voice+=("\"$(new_key "${SLUG[A]}" "voice-$i" 1000000 '*')\""); done
import_key=$(new_key "${SLUG[A]}" import 1000000 '*')
search_key=$(new_key "${SLUG[A]}" search 1000000 'read:leads')
hammer_key=$(new_key "${SLUG[A]}" hammer "$HAMMER_LIMIT" 'read:leads')
export KEYS_FILE="$WORK/keys.json"
(
    umask 077
    printf '{"tenants":{"A":{"slug":"%s","key":"%s"},"B":{"slug":"%s","key":"%s"},"C":{"slug":"%s","key":"%s"}},' \
        "${SLUG[A]}" "${WB[A]}" "${SLUG[B]}" "${WB[B]}" "${SLUG[C]}" "${WB[C]}"
    printf '"abuse":{"flood":%s,"voice":%s,"import":"%s","search":"%s","hammer":"%s"}}\n' \
        "$(json_list "${flood[@]}")" "$(json_list "${voice[@]}")" "$import_key" "$search_key" "$hammer_key"
) >"$KEYS_FILE"

# Port 0: the kernel picks a free port, with no race; Flow prints the address it bound.
# JSON logs, so the report can count Flow's warnings by message.
"$FLOW_BIN" --data-dir "$DATA" --log-format json serve --host 127.0.0.1 --port 0 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL=""
deadline=$((SECONDS + 30))
while [[ -z $URL ]]; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "flow exited during startup"
    ((SECONDS < deadline)) || die "flow did not report its address within 30 s"
    URL=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$WORK/server.log" | head -n 1 || true)
    [[ -n $URL ]] || sleep 0.1
done
curl -fsS --max-time 5 "$URL/health" >/dev/null || die "GET $URL/health failed"
log "flow is up at $URL (pid $SERVER_PID)"

export SOAK_URL=$URL SERVER_PID SERVER_LOG="$WORK/server.log" SOAK_DATA="$DATA"
log "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
node "$HERE/soak.js" &
NODE_PID=$!
wait "$NODE_PID"
