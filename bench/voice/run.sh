#!/usr/bin/env bash
# Voice benchmark: parse latency of the command parser, a text command end to end over
# HTTP, and the audio round trip (a spoken two-second English command in, the spoken
# answer out) with the local speech providers. Appends a "voice" section to
# bench/RESULTS.md. Targets (2-core machine): parse p99 < 100 µs, text command p99 < 5 ms,
# audio round trip < 500 ms.
#
# Usage: ./bench/voice/run.sh
# Environment overrides: TEXT_REQUESTS [5000], AUDIO_REQUESTS [30], PARSE_ROUNDS [200],
#   FLOW_BIN (skip the build), RESULTS [bench/RESULTS.md; "-" prints only]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TEXT_REQUESTS=${TEXT_REQUESTS:-5000}
AUDIO_REQUESTS=${AUDIO_REQUESTS:-30}
PARSE_ROUNDS=${PARSE_ROUNDS:-200}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
export RUST_LOG=warn
unset DATABASE_URL FLOW_DATABASE_URL FLOW_CONFIG FLOW_DATA_DIR FLOW_HOST FLOW_PORT

log() { printf '[voice bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in oha espeak-ng pocketsphinx_continuous python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install espeak-ng pocketsphinx pocketsphinx-en-us; cargo install oha)"
done

cd "$ROOT"
log "building (release)"
# Two commands: with `--example`, cargo builds only the named targets, so the flow binary
# would not be (re)built and a stale target/release/flow would be measured.
cargo build --release -q -p flow-server
cargo build --release -q -p flow-voice --example parse_bench
FLOW_BIN=${FLOW_BIN:-$ROOT/target/release/flow}
export -n FLOW_BIN

log "parse latency and accuracy"
PARSE=$("$ROOT/target/release/examples/parse_bench" "$PARSE_ROUNDS")
ACCURACY=$(cargo test -q --release -p flow-voice --test utterance_tables -- --nocapture 2>&1 \
    | grep -oE '[a-z_]+\.tsv: [0-9]+/[0-9]+ exact \([0-9.]+%\)' | paste -sd ';' | sed 's/;/; /g')

WORK=$(mktemp -d /tmp/flow-voice-bench.XXXXXX)
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
flow() { "$FLOW_BIN" --data-dir "$WORK/data" "$@"; }
SLUG=$(flow tenant create "Voice bench" | awk '/^tenant:/ {print $2; exit}')
KEY=$(flow key create --tenant "$SLUG" --name bench --rate-limit 1000000 | awk '/^api key:/ {print $3; exit}')
"$FLOW_BIN" --data-dir "$WORK/data" serve --port 0 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL=""
for _ in $(seq 300); do
    URL=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$WORK/server.log" | head -n 1 || true)
    [[ -n $URL ]] && break
    sleep 0.1
done
[[ -n $URL ]] || die "flow did not start"
for name in "John Smith" "Mette Hansen" "Peter Jensen" "Anna Berg" "Lars Nielsen"; do
    curl -fsS -o /dev/null -H "x-tenant-key: $KEY" -H 'content-type: application/json' \
        -d "{\"firstName\": \"${name% *}\", \"lastName\": \"${name#* }\", \"source\": \"web\"}" "$URL/leads"
done

text_run() {
    local concurrency=$1
    oha --no-tui --output-format json -n "$TEXT_REQUESTS" -c "$concurrency" -m POST \
        -H "x-tenant-key: $KEY" -H 'content-type: application/json' \
        -d '{"text": "show new leads"}' "$URL/voice/execute" >"$WORK/oha-$concurrency.json"
    python3 - "$WORK/oha-$concurrency.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f'{s["requestsPerSec"]:.0f} req/s, p50 {p["p50"]*1000:.2f} ms, p99 {p["p99"]*1000:.2f} ms, statuses {codes}')
PY
}
log "text command end to end"
TEXT_1=$(text_run 1)
TEXT_8=$(text_run 8)

log "audio round trip"
espeak-ng -v en-us -s 95 -w "$WORK/command.wav" "show new leads"
AUDIO=$(python3 - "$URL" "$KEY" "$WORK/command.wav" "$AUDIO_REQUESTS" <<'PY'
import json, sys, time, urllib.request, wave
url, key, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
audio = open(path, "rb").read()
with wave.open(path) as w:
    seconds = w.getnframes() / w.getframerate()
times, transcripts, speech = [], set(), set()
for _ in range(n):
    request = urllib.request.Request(f"{url}/voice/execute?language=en", data=audio, method="POST",
        headers={"x-tenant-key": key, "content-type": "audio/wav"})
    start = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        answer = json.load(response)
    times.append((time.perf_counter() - start) * 1000)
    transcripts.add(answer.get("transcript"))
    speech.add((answer.get("speech") or {}).get("contentType"))
times.sort()
pct = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f"{seconds:.2f} s of audio, {n} requests: p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, max {times[-1]:.0f} ms; transcripts {sorted(map(str, transcripts))}, speech {sorted(map(str, speech))}")
PY
)

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo "+dirty")
SECTION=$(cat <<MD

## voice — $(date -u +%Y-%m-%dT%H:%MZ), commit $COMMIT

Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`./bench/voice/run.sh\` (TEXT_REQUESTS=$TEXT_REQUESTS AUDIO_REQUESTS=$AUDIO_REQUESTS PARSE_ROUNDS=$PARSE_ROUNDS). Flow on the embedded SQLite, local speech (PocketSphinx with the command grammar, eSpeak NG).

| Measure | Result | Target |
|---|---|---|
| parse accuracy, exact match (command and parameters) on the utterance tables | $ACCURACY | 98 % |
| parse latency (flow-voice, every utterance of both tables) | $PARSE | p99 < 100 µs |
| text command end to end, \`POST /voice/execute {"text": "show new leads"}\`, 1 connection | $TEXT_1 | p99 < 5 ms |
| same, 8 connections | $TEXT_8 | |
| audio round trip: WAV of "show new leads" (eSpeak, slow rate) in, transcript, execution and WAV reply out | $AUDIO | < 500 ms |

A text command is parsed, executed (a lead list), audited, announced as VOICE_COMMAND_EXECUTED and stored as two conversation turns: three transactions. The audio path adds two events (VOICE_PROCESSING_STARTED/COMPLETED), one PocketSphinx process (model load included) and one eSpeak NG process per request.
MD
)
if [[ $RESULTS == - ]]; then
    printf '%s\n' "$SECTION"
else
    printf '%s\n' "$SECTION" >>"$RESULTS"
    log "appended to $RESULTS"
    printf '%s\n' "$SECTION"
fi
