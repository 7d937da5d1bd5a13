#!/usr/bin/env python3
"""Compares the working tree with a given commit on the queue, create and list benchmarks.

    ./bench/compare.py BASE            e.g. ./bench/compare.py origin/main, HEAD~1, 66bd0b7

Builds BASE from a clean `git archive` export (its own target directory under $TMPDIR,
kept between runs) and the working tree (the usual target/), then measures both in one
sitting, alternating the two binaries round by round so that background load hits both
alike:

- queue: `bench/queue/run.sh` with Flow only, 4 workers x 16, the no-op and the small
  workload (jobs/s end to end);
- create and list: `bench/run.sh` with the list run unthrottled (LIST_RATE=max), so both
  are throughputs (2xx/s).

Prints one markdown table (median of the rounds per metric, the ratio working tree / BASE)
and exits 1 if any metric dropped by more than THRESHOLD (20 %). Run it before resolving
an issue that touches a hot path, and put its table in the note. See bench/README.md.

Environment: ROUNDS [3], THRESHOLD [0.2], N (queue jobs per run) [20000], DURATION (each
oha run) [10s], COMPARE_DIR [$TMPDIR/flow-compare], QUIET_WAIT (s to wait for a quiet
machine before measuring) [300].
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402  (bench/report.py reads oha's JSON)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
THRESHOLD = float(os.environ.get("THRESHOLD", "0.2"))
QUEUE_N = os.environ.get("N", "20000")
DURATION = os.environ.get("DURATION", "10s")
QUIET_WAIT = int(os.environ.get("QUIET_WAIT", "300"))
WORK_DIR = Path(os.environ.get("COMPARE_DIR", Path(tempfile.gettempdir()) / "flow-compare"))

# (metric, what it measures); all are "higher is better" throughputs.
METRICS = [
    ("queue no-op", "jobs/s"),
    ("queue small", "jobs/s"),
    ("lead create", "2xx/s"),
    ("lead list", "2xx/s"),
]


def log(message):
    print(f"[compare {time.strftime('%H:%M:%S', time.gmtime())}] {message}", file=sys.stderr, flush=True)


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def build_base(ref):
    """A release binary of `ref`, built from a clean export; cached by commit."""
    rev = git("rev-parse", "--short", f"{ref}^{{commit}}")
    binary = WORK_DIR / f"flow-{rev}"
    if binary.exists():
        log(f"using the cached build of {rev}")
        return rev, binary
    src = WORK_DIR / f"src-{rev}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    # -m: extraction time, not the commit's; with the commit's times cargo could take a newer
    # build of another commit in the shared target dir as up to date.
    subprocess.run(["tar", "-x", "-m", "-C", str(src)], input=archive, check=True)
    log(f"building {rev} (release) from a clean export in {src}")
    env = dict(os.environ, CARGO_TARGET_DIR=str(WORK_DIR / "target"))
    subprocess.run(["cargo", "build", "--release", "-p", "flow-server"], cwd=src, env=env, check=True)
    shutil.copy2(WORK_DIR / "target" / "release" / "flow", binary)
    shutil.rmtree(src, ignore_errors=True)
    return rev, binary


def build_work():
    """A release binary of the working tree, copied so later builds cannot change it."""
    log("building the working tree (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "flow-server"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    binary = WORK_DIR / "flow-work"
    shutil.copy2(target / "release" / "flow", binary)
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"]).returncode != 0
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else ""), binary


def wait_quiet():
    start = time.monotonic()
    while os.getloadavg()[0] >= 1.0 and time.monotonic() - start < QUIET_WAIT:
        time.sleep(5)
    log(f"1-minute load average {os.getloadavg()[0]:.2f} after waiting {time.monotonic() - start:.0f} s")


def bench_env(binary, out_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_") and k != "DATABASE_URL"}
    env.update(FLOW_BIN=str(binary), RESULTS="-", OUT_DIR=str(out_dir), **extra)
    return env


def measure(binary, out_dir):
    """One round of every metric for one binary."""
    figures = {}
    queue_out = out_dir / "queue"
    env = bench_env(binary, queue_out, FLOW_SETTING="4x16", WORKLOADS="noop,small", SYSTEMS="flow",
                    REPEAT="1", N=QUEUE_N, QUIET_WAIT="0")
    subprocess.run([str(HERE / "queue" / "run.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
    (results,) = queue_out.glob("*-results.json")
    for run in json.loads(results.read_text())["runs"]:
        if run.get("error"):
            raise SystemExit(f"queue run failed: {run['error']}")
        figures[f"queue {'no-op' if run['workload'] == 'noop' else run['workload']}"] = run["jobsPerS"]
    http_out = out_dir / "http"
    env = bench_env(binary, http_out, LIST_RATE="max", DURATION=DURATION)
    subprocess.run([str(HERE / "run.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
    for metric, name in (("lead create", "create"), ("lead list", "list")):
        stats = report.stats(http_out / f"{name}.json")
        if stats["non2xx"] or stats["errors"]:
            raise SystemExit(f"{metric}: non-2xx {stats['non2xx']} errors {stats['errors']}")
        figures[metric] = stats["ok_per_sec"]
    return figures


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    base_name, base_bin = build_base(sys.argv[1])
    work_name, work_bin = build_work()
    wait_quiet()
    runs = {"base": [], "work": []}
    with tempfile.TemporaryDirectory(prefix="flow-compare-") as tmp:
        for round_no in range(ROUNDS):
            order = ["base", "work"] if round_no % 2 == 0 else ["work", "base"]
            for side in order:
                binary = base_bin if side == "base" else work_bin
                log(f"round {round_no + 1}/{ROUNDS}: {side}")
                out = Path(tmp) / f"{round_no}-{side}"
                runs[side].append(measure(binary, out))
                log(f"  {', '.join(f'{k} {v:,.0f}' for k, v in runs[side][-1].items())}")

    machine = f"{os.cpu_count()} cores, {cpu_model()}"
    print(f"Compared on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine}: "
          f"`./bench/compare.py {sys.argv[1]}`, {ROUNDS} rounds alternating binaries, median shown.\n")
    print(f"| metric | {base_name} (base) | {work_name} | ratio | verdict |")
    print("|---|--:|--:|--:|---|")
    failed = []
    for metric, unit in METRICS:
        base = statistics.median(r[metric] for r in runs["base"])
        work = statistics.median(r[metric] for r in runs["work"])
        ratio = work / base if base else float("inf")
        verdict = "ok"
        if ratio < 1 - THRESHOLD:
            verdict = f"**DROP > {THRESHOLD:.0%}**"
            failed.append(metric)
        print(f"| {metric} ({unit}) | {base:,.0f} | {work:,.0f} | {ratio:.2f}x | {verdict} |")
    if failed:
        log(f"dropped by more than {THRESHOLD:.0%}: {', '.join(failed)}")
        return 1
    return 0


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
