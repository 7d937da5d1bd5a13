# Sourced by the benchmark scripts: sets FLOW_BIN and FLOW_BIN_DESC.
# Takes FLOW_BIN when it is given; otherwise builds `flow` (release) from the work tree.
# Needs ROOT, log and die from the script that sources it.
flow_binary() {
    if [[ -z ${FLOW_BIN:-} ]]; then
        log "building flow (release)"
        (cd "$ROOT" && cargo build --release -p flow-server)
        local target=${CARGO_TARGET_DIR:-target}
        [[ $target == /* ]] || target="$ROOT/$target"
        FLOW_BIN="$target/release/flow"
        FLOW_BIN_DESC="target/release/flow, built by run.sh"
    else
        FLOW_BIN_DESC="$FLOW_BIN (given as FLOW_BIN)"
    fi
    [[ -x $FLOW_BIN ]] || die "no flow binary at $FLOW_BIN"
}
