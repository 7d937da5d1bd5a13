#!/usr/bin/env bash
# Job-queue benchmark: Flow's durable queues against BullMQ on redis-server, in the same
# run. Enqueues and processes N no-op and N small jobs on each, reports jobs/s end to end
# and enqueue→completion latency, and appends a "queue" section to bench/RESULTS.md.
# See bench/queue/README.md.
#
# Usage: ./bench/queue/run.sh
# Environment overrides (defaults in brackets):
#   N              jobs per run [20000]
#   BATCH          jobs per enqueue request / addBulk call, 1-1000 [1000]
#   REPEAT         runs of each system × workload; the median is reported [3]
#   WORKLOADS      [noop,small]
#   SYSTEMS        [flow,bullmq,bullmq-aof]  (bullmq: AOF off; bullmq-aof: AOF everysec)
#   FLOW_SWEEP     Flow worker settings tried first, CONCURRENCYxBATCH [2x16,2x64,4x16,4x64]
#   FLOW_SETTING   use this setting (e.g. 4x64) and skip the sweep
#   SWEEP_N        jobs per sweep run [N]
#   SWEEP_REPEAT   runs of each sweep setting; the best mean wins [2]
#   BULL_CONCURRENCY  BullMQ Worker concurrency [50]
#   PAYLOAD_BYTES  size of the "small" payload [200]
#   POLL_MS        completion poll interval [50]
#   POLL           how the driver waits for Flow: last (poll the last job, then the
#                  counts) or counts (poll GET /admin/queues throughout) [last]
#   QUIET_LOAD, QUIET_WAIT  wait up to QUIET_WAIT s [600] for the 1-minute load average
#                  to drop below QUIET_LOAD [1.0] before measuring
#   RUN_TIMEOUT    seconds a run may take to complete [120]
#   FLOW_REF       build this commit (e.g. HEAD) from a clean `git archive` export in /tmp
#                  instead of the working tree, and record that commit
#   FLOW_BIN       a flow binary to benchmark; skips the build
#   RESULTS        file to append to [bench/RESULTS.md]; "-" prints only
#
# All traffic is on 127.0.0.1; every loop is bounded by a count and a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

log() { printf '[queue %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The exact invocation, for the record (only the overrides that were given).
RUN_COMMAND=""
for var in N BATCH REPEAT WORKLOADS SYSTEMS FLOW_SWEEP FLOW_SETTING SWEEP_N SWEEP_REPEAT BULL_CONCURRENCY \
    PAYLOAD_BYTES POLL_MS POLL QUIET_LOAD QUIET_WAIT RUN_TIMEOUT FLOW_REF FLOW_BIN RESULTS; do
    if printenv "$var" >/dev/null; then
        RUN_COMMAND+="$var=$(printenv "$var") "
    fi
done
RUN_COMMAND+="./bench/queue/run.sh"
export RUN_COMMAND

# --- Node packages ------------------------------------------------------------------------
command -v node >/dev/null || die "node is not installed"
if ! (cd "$HERE" && node -e 'require("bullmq"); require("ioredis")' 2>/dev/null); then
    log "installing npm packages (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund)
fi

# --- redis-server (Debian package) ----------------------------------------------------------
if ! command -v redis-server >/dev/null; then
    log "installing redis-server with apt-get"
    if ! apt-get install -y redis-server; then
        apt-get update
        apt-get install -y redis-server
    fi
fi
# The Debian package may start a system redis on 6379; the bench runs its own on free
# ports and never touches that one.

# --- Flow -----------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $COMMIT != unknown ]] && ! git -C "$ROOT" diff --quiet HEAD -- . ':(exclude)bench/RESULTS.md' 2>/dev/null; then
    COMMIT+=" (with uncommitted changes)"
fi

if [[ ,${SYSTEMS:-flow}, == *,flow,* ]]; then
    if [[ -n ${FLOW_REF:-} && -z ${FLOW_BIN:-} ]]; then
        # A clean build of one commit, away from the working tree (which others may be
        # editing): git archive into a temporary directory, its own target dir in /tmp.
        rev=$(git -C "$ROOT" rev-parse --short "$FLOW_REF^{commit}") || die "unknown FLOW_REF $FLOW_REF"
        src="${TMPDIR:-/tmp}/flow-queue-src-$rev"
        rm -rf "$src" && mkdir -p "$src"
        # -m: the files get the time of extraction. With the commit's times, cargo could take a
        # newer build of another commit in the shared target dir as up to date.
        git -C "$ROOT" archive "$rev" | tar -x -m -C "$src"
        target=${QUEUE_TARGET_DIR:-${TMPDIR:-/tmp}/flow-queue-target}
        log "building flow (release) from a clean export of $rev in $src"
        (cd "$src" && CARGO_TARGET_DIR="$target" cargo build --release -p flow-server)
        FLOW_BIN="$target/release/flow"
        FLOW_BIN_DESC="release build of a clean export of $rev (FLOW_REF=$FLOW_REF), built by run.sh"
        COMMIT=$rev
    elif [[ -z ${FLOW_BIN:-} ]]; then
        log "building flow (release)"
        (cd "$ROOT" && cargo build --release -p flow-server)
        target=${CARGO_TARGET_DIR:-target}
        [[ $target == /* ]] || target="$ROOT/$target"
        FLOW_BIN="$target/release/flow"
        FLOW_BIN_DESC="target/release/flow, built by run.sh"
    else
        FLOW_BIN_DESC="$FLOW_BIN (given as FLOW_BIN)"
        COMMIT+=" (the work tree's; FLOW_BIN may be a build of another)"
    fi
    [[ -x $FLOW_BIN ]] || die "no flow binary at $FLOW_BIN"
    # bench.js removes every FLOW_* variable from Flow's environment (Flow rejects
    # unknown ones) and sets only the worker settings of each run.
    export FLOW_BIN FLOW_BIN_DESC
fi
export COMMIT

log "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
exec node "$HERE/bench.js"
