#!/usr/bin/env bash
# Flow's benchmark: filtered lead-list latency at a fixed rate and lead-create
# throughput, against a release build on a fresh embedded database. Appends a
# section to bench/RESULTS.md. See bench/README.md.
#
# Usage: ./bench/run.sh
# Environment overrides:
#   DURATION          length of each measured run, in oha's syntax (default 10s)
#   CONCURRENCY       connections for the create run (default 32)
#   LIST_CONCURRENCY  connections for the list run (default 16)
#   LIST_RATE         fixed request rate of the list run, req/s (default 1000); "max":
#                     as fast as the server answers (throughput rather than latency)
#   SEED_LEADS        leads created before measuring (default 2000)
#   FLOW_BIN          a flow binary to benchmark; skips the build
#   RESULTS           file to append to (default bench/RESULTS.md); "-" prints only
#   OUT_DIR           also keep oha's list.json and create.json here (bench/compare.py)
#
# All traffic goes to 127.0.0.1 only; every request loop is bounded by a count or
# by DURATION, and every wait by a deadline.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-32}
LIST_CONCURRENCY=${LIST_CONCURRENCY:-16}
LIST_RATE=${LIST_RATE:-1000}
SEED_LEADS=${SEED_LEADS:-2000}
RESULTS=${RESULTS:-$BENCH/RESULTS.md}
# The exact invocation, for the record (only the overrides that were given).
RUN_COMMAND=""
for var in DURATION CONCURRENCY LIST_CONCURRENCY LIST_RATE SEED_LEADS FLOW_BIN RESULTS OUT_DIR; do
    if printenv "$var" >/dev/null; then
        RUN_COMMAND+="$var=$(printenv "$var") "
    fi
done
RUN_COMMAND+="./bench/run.sh"

# Per-request info logs cost measurable time; the bench measures Flow, not its logs.
export RUST_LOG=warn
# The bench always runs against its own fresh embedded database on 127.0.0.1: settings
# from the caller's environment must not point it at another database or address.
unset DATABASE_URL FLOW_DATABASE_URL FLOW_CONFIG FLOW_DATA_DIR FLOW_HOST FLOW_PORT

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- oha, the load generator --------------------------------------------------------
# cargo installs into ~/.cargo/bin, which is not always on PATH.
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v oha >/dev/null 2>&1; then
    log "oha not found: installing it with cargo (about 10 minutes on 2 cores)"
    cargo install oha --locked
fi
OHA_VERSION=$(oha --version) || die "oha --version failed"
OHA_HELP=$(oha --help)
# The JSON flag changed: recent oha has --output-format json, older ones -j.
if grep -q -- '--output-format' <<<"$OHA_HELP"; then
    OHA_OUT=(--output-format json)
else
    OHA_OUT=(-j)
fi
# Without a terminal oha draws no TUI anyway; say so explicitly where supported.
if grep -q -- '--no-tui' <<<"$OHA_HELP"; then
    OHA_OUT+=(--no-tui)
fi
log "using $OHA_VERSION"

# --- Flow ---------------------------------------------------------------------------
# shellcheck source=bench/flow-binary.sh
source "$ROOT/bench/flow-binary.sh"
flow_binary
# Flow reads every FLOW_* environment variable as a setting and rejects unknown ones:
# keep FLOW_BIN a shell variable only.
export -n FLOW_BIN

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flow-bench.XXXXXX")
DATA="$WORK/data"
mkdir -p "$DATA"
SERVER_PID=""

cleanup() {
    local rc=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # Flow finishes in-flight requests on SIGTERM; give it 5 s, then force it.
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
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

flow() { "$FLOW_BIN" --data-dir "$DATA" "$@"; }

log "creating the bench tenant and key in $DATA"
tenant_out=$(flow tenant create "Bench")
SLUG=$(awk '/^tenant:/ {print $2; exit}' <<<"$tenant_out")
[[ -n $SLUG ]] || die "could not read the tenant slug from: $tenant_out"
# Rate limits are per minute; this one is far above anything 2 cores can send, so
# the run measures Flow rather than its 429s.
key_out=$(flow key create --tenant "$SLUG" --name bench --rate-limit 1000000)
KEY=$(awk '/^api key:/ {print $3; exit}' <<<"$key_out")
[[ $KEY == flow_sk_* ]] || die "could not read the API key from: $key_out"

# Port 0: the kernel picks a free port, with no race; Flow prints the address it bound.
"$FLOW_BIN" --data-dir "$DATA" serve --host 127.0.0.1 --port 0 >"$WORK/server.log" 2>&1 &
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

# --- Helpers ------------------------------------------------------------------------
# Commands are written with the placeholder @KEY@ so the recorded command never holds
# the secret; run_oha substitutes it.
run_oha() { # OUT_FILE ARGS...
    local out=$1
    shift
    local args=("${@//@KEY@/$KEY}")
    oha "${OHA_OUT[@]}" "${args[@]}" >"$out"
}

# Renders a command for RESULTS.md, quoting only where needed.
show_command() {
    local word out="oha"
    for word in "${OHA_OUT[@]}" "$@"; do
        word=${word//@KEY@/\$KEY}
        if [[ $word =~ ^[A-Za-z0-9_./:=%+,-]+$ ]]; then
            out+=" $word"
        else
            out+=" '${word//\'/\'\\\'\'}'"
        fi
    done
    printf '%s' "$out"
}

# Where the CPU went during a measured run, in % of one core (a 2-core machine has
# 200%): Flow, oha, and everything else on the machine. "Else" well above zero means
# other work (a compile, say) competed with the run and skewed it.
cpu_ticks() { # prints "FLOW_TICKS MACHINE_BUSY_TICKS MACHINE_TOTAL_TICKS"
    local server
    server=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
    awk -v s="$server" '/^cpu / {idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print s, total - idle, total}' /proc/stat
}
# Sets CHILDREN_CPU to the CPU seconds of this shell's finished children (oha among
# them), from the `times` builtin. It must run in this shell, not in a $(...) subshell,
# which would report its own (empty) children.
children_cpu() {
    local user sys
    times >"$WORK/times"
    { read -r _ _; read -r user sys; } <"$WORK/times"
    CHILDREN_CPU=$(awk -v u="$user" -v s="$sys" 'function secs(t) { split(t, p, "m"); sub("s", "", p[2]); return p[1] * 60 + p[2] }
        BEGIN { printf "%.3f", secs(u) + secs(s) }')
}
# Runs oha like run_oha and stores "FLOW,OHA,ELSE" CPU percentages in variable VAR.
measured_oha() { # OUT_FILE VAR ARGS...
    local out=$1 var=$2 t0 t1 c0
    shift 2
    t0=$(cpu_ticks)
    children_cpu
    c0=$CHILDREN_CPU
    run_oha "$out" "$@"
    t1=$(cpu_ticks)
    children_cpu
    local s0 b0 a0 s1 b1 a1
    read -r s0 b0 a0 <<<"$t0"
    read -r s1 b1 a1 <<<"$t1"
    printf -v "$var" '%s' "$(awk -v ds=$((s1 - s0)) -v db=$((b1 - b0)) -v dt=$((a1 - a0)) \
        -v n="$(nproc)" -v hz="$(getconf CLK_TCK)" -v c0="$c0" -v c1="$CHILDREN_CPU" 'BEGIN {
            if (dt <= 0) { print "n/a,n/a,n/a"; exit }
            core = dt / n  # ticks one core had during the run
            flow = 100 * ds / core; oha = 100 * (c1 - c0) * hz / core
            other = 100 * db / core - flow - oha; if (other < 0) other = 0
            printf "%.0f,%.0f,%.0f", flow, oha, other }')"
}

HDR_KEY=(-H "x-tenant-key: @KEY@")
HDR_JSON=(-H "content-type: application/json")
SEED_BODY='{"firstName":"Seed","lastName":"Lead","email":"seed@example.com","source":"website"}'
BODY='{"firstName":"Bench","lastName":"User","email":"bench@example.com","source":"website"}'
LIST_URL="$URL/leads?status=NEW&limit=20"

# --- Seed ---------------------------------------------------------------------------
log "seeding $SEED_LEADS leads"
run_oha "$WORK/seed.json" -n "$SEED_LEADS" -c 8 -m POST "${HDR_KEY[@]}" "${HDR_JSON[@]}" -d "$SEED_BODY" "$URL/leads"
python3 "$BENCH/report.py" check "$WORK/seed.json" "$SEED_LEADS" || die "seeding did not create $SEED_LEADS leads"
# A short warm-up of the list path (opens the read connections), not recorded; also
# checks that the list endpoint answers 2xx before measuring it.
run_oha "$WORK/warmup.json" -n 200 -c 4 "${HDR_KEY[@]}" "$LIST_URL"
python3 "$BENCH/report.py" check "$WORK/warmup.json" 200 || die "GET /leads did not answer 2xx"

# --- Measured runs ------------------------------------------------------------------
# The list runs first, on exactly the seeded leads, so its latency does not depend on
# how many leads the create run managed to insert.
# --latency-correction measures each request from when the fixed schedule meant to
# send it, so a server that falls behind shows it in the percentiles (no coordinated
# omission).
if [[ $LIST_RATE == max ]]; then
    LIST_ARGS=(-z "$DURATION" -c "$LIST_CONCURRENCY" "${HDR_KEY[@]}" "$LIST_URL")
    log "list: as fast as possible for $DURATION over $LIST_CONCURRENCY connections"
else
    LIST_ARGS=(-q "$LIST_RATE" -z "$DURATION" -c "$LIST_CONCURRENCY" --latency-correction "${HDR_KEY[@]}" "$LIST_URL")
    log "list: $LIST_RATE req/s for $DURATION over $LIST_CONCURRENCY connections"
fi
measured_oha "$WORK/list.json" LIST_CPU "${LIST_ARGS[@]}"

CREATE_ARGS=(-z "$DURATION" -c "$CONCURRENCY" -m POST "${HDR_KEY[@]}" "${HDR_JSON[@]}" -d "$BODY" "$URL/leads")
log "create: as fast as possible for $DURATION over $CONCURRENCY connections"
measured_oha "$WORK/create.json" CREATE_CPU "${CREATE_ARGS[@]}"

kill -0 "$SERVER_PID" 2>/dev/null || die "flow died during the run"
if [[ -n ${OUT_DIR:-} ]]; then
    mkdir -p "$OUT_DIR"
    cp "$WORK/list.json" "$WORK/create.json" "$OUT_DIR/"
fi

# --- Report -------------------------------------------------------------------------
mem_gib=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes to tracked files mean the numbers are not those of $commit.
if [[ $commit != unknown ]] && ! git -C "$ROOT" diff --quiet HEAD -- . ':(exclude)bench/RESULTS.md' 2>/dev/null; then
    commit+=" (with uncommitted changes)"
fi

if [[ $LIST_RATE == max ]]; then
    list_load="max, $LIST_CONCURRENCY conns, $DURATION"
    LIST_RATE=0
else
    list_load="$LIST_RATE req/s, $LIST_CONCURRENCY conns, $DURATION"
fi
section=$(python3 "$BENCH/report.py" section \
    --list "$WORK/list.json" --create "$WORK/create.json" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --commit "$commit" \
    --machine "$(nproc) cores, ${cpu_model:-unknown CPU}, $mem_gib GiB RAM" \
    --oha-version "$OHA_VERSION" \
    --flow-bin "$FLOW_BIN_DESC" \
    --dataset "fresh data dir; $SEED_LEADS leads seeded (all NEW, one contact); list measured before create" \
    --run-command "$RUN_COMMAND" \
    --list-load "$list_load" \
    --create-load "max, $CONCURRENCY conns, $DURATION" \
    --list-rate "$LIST_RATE" \
    --list-cpu "$LIST_CPU" --create-cpu "$CREATE_CPU" \
    --list-command "$(show_command "${LIST_ARGS[@]}")" \
    --create-command "$(show_command "${CREATE_ARGS[@]}")")
if [[ $RESULTS == - ]]; then
    printf '%s\n' "$section"
else
    [[ -f $RESULTS ]] || printf '# Flow benchmark results\n\n' >"$RESULTS"
    printf '%s\n' "$section" >>"$RESULTS"
    log "appended results to $RESULTS"
fi
