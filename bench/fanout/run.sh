#!/usr/bin/env bash
# WebSocket fan-out benchmark: Flow's /events gateway against a socket.io server
# broadcasting to a room, in the same run. Appends a "fan-out" section to
# bench/RESULTS.md. See bench/fanout/README.md.
#
# Usage: ./bench/fanout/run.sh
# Environment overrides (defaults in brackets):
#   SERVERS          servers to run, in order [flow,socketio]
#   SIZES            connection counts for the memory + fixed-rate scenarios [1000,10000]
#   RATE             events/s of the fixed-rate run [10]
#   DURATION         seconds of the fixed-rate run [10]
#   SWEEP_N          connections during the rate sweep; 0 skips it [1000]
#   SWEEP_RATES      events/s steps of the sweep [10,20,30,40,50,75,100,150,200,300,400,600,800]
#   SWEEP_DURATION   seconds per sweep step [10]
#   CLIENT_PROCS     client processes sharing the connections [4]
#   FLOW_REF         build this commit (e.g. HEAD) from a clean `git archive` export in
#                    /tmp instead of the working tree, and record that commit
#   FLOW_BIN         a flow binary to benchmark; skips the build
#   RESULTS          file to append to [bench/RESULTS.md]; "-" prints only
#   and CONNECT_CONCURRENCY, CLIENT_NODE_ARGS, SETTLE, WARMUP, DRAIN, P99_TARGET_MS, QUIET_PCT,
#   QUIET_WAIT, QUIET_SAMPLES, BUSY_ELSE_PCT, BUSY_RETRIES: see README.md
#
# All traffic is on 127.0.0.1; every loop is bounded by a count and a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

log() { printf '[fanout %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The exact invocation, for the record (only the overrides that were given).
RUN_COMMAND=""
for var in SERVERS SIZES RATE DURATION SWEEP_N SWEEP_RATES SWEEP_DURATION CLIENT_PROCS \
    CONNECT_CONCURRENCY CLIENT_NODE_ARGS SETTLE WARMUP DRAIN P99_TARGET_MS QUIET_PCT QUIET_WAIT QUIET_SAMPLES \
    BUSY_ELSE_PCT BUSY_RETRIES FLOW_REF FLOW_BIN RESULTS; do
    if printenv "$var" >/dev/null; then
        RUN_COMMAND+="$var=$(printenv "$var") "
    fi
done
RUN_COMMAND+="./bench/fanout/run.sh"
export RUN_COMMAND

# 10,000 sockets need 10,000 descriptors in the server and a share in each client process.
# Without CAP_SYS_RESOURCE the hard limit caps it (20,000 on these machines: enough).
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
ULIMIT_N=$(ulimit -n)
export ULIMIT_N
((ULIMIT_N >= 12000)) || log "warning: fd limit is $ULIMIT_N; 10,000 connections will fail"

command -v node >/dev/null || die "node is not installed"
if [[ ! -d $HERE/node_modules/socket.io || ! -d $HERE/node_modules/ws ]]; then
    log "installing npm packages (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund)
fi

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $COMMIT != unknown ]] && ! git -C "$ROOT" diff --quiet HEAD -- . ':(exclude)bench/RESULTS.md' 2>/dev/null; then
    COMMIT+=" (with uncommitted changes)"
fi

if [[ ,${SERVERS:-flow}, == *,flow,* ]]; then
    if [[ -n ${FLOW_REF:-} && -z ${FLOW_BIN:-} ]]; then
        # A clean build of one commit, away from the working tree (which others may be
        # editing): git archive into a temporary directory, its own target dir in /tmp.
        rev=$(git -C "$ROOT" rev-parse --short "$FLOW_REF^{commit}") || die "unknown FLOW_REF $FLOW_REF"
        src="${TMPDIR:-/tmp}/flow-fanout-src-$rev"
        rm -rf "$src" && mkdir -p "$src"
        # -m: the files get the time of extraction. With the commit's times, cargo could take a
        # newer build of another commit in the shared target dir as up to date.
        git -C "$ROOT" archive "$rev" | tar -x -m -C "$src"
        target=${FANOUT_TARGET_DIR:-${TMPDIR:-/tmp}/flow-fanout-target}
        log "building flow (release) from a clean export of $rev in $src"
        (cd "$src" && CARGO_TARGET_DIR="$target" cargo build --release -p flow-server)
        FLOW_BIN="$target/release/flow"
        FLOW_BIN_DESC="release build of a clean export of $rev (FLOW_REF=$FLOW_REF), built by run.sh"
        [[ -x $FLOW_BIN ]] || die "no flow binary at $FLOW_BIN"
        COMMIT=$rev
        # The harness itself is read from the working tree.
        if ! git -C "$ROOT" diff --quiet HEAD -- bench/fanout 2>/dev/null; then
            COMMIT+=" (bench/fanout with uncommitted changes)"
        fi
    else
        # shellcheck source=bench/flow-binary.sh
        source "$ROOT/bench/flow-binary.sh"
        flow_binary
    fi
    export FLOW_BIN FLOW_BIN_DESC
fi

export COMMIT

log "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
exec node "$HERE/bench.js"
