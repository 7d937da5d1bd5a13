#!/usr/bin/env python3
"""Reads oha's JSON output for bench/run.sh.

  report.py check FILE EXPECTED_2XX     exit 1 unless FILE has at least that many 2xx
  report.py section [options]           print a markdown results section to stdout

Only 2xx responses count as successes: oha's own "successRate" and "requestsPerSec"
count every response, including 4xx/5xx, which would flatter a failing server.
"""

import argparse
import json
import sys

# oha cancels the requests still in flight when a -z duration ends and records them
# as errors with this message: an artifact of stopping, not a failure of the server.
DEADLINE_ABORT = "aborted due to deadline"


def load(path):
    with open(path) as f:
        return json.load(f)


def stats(path):
    """The numbers the report needs from one oha JSON file; latencies in ms."""
    data = load(path)
    codes = {int(k): v for k, v in (data.get("statusCodeDistribution") or {}).items()}
    ok = sum(n for code, n in codes.items() if 200 <= code < 300)
    non2xx = {code: n for code, n in codes.items() if not 200 <= code < 300}
    errors = {
        msg: n
        for msg, n in (data.get("errorDistribution") or {}).items()
        if DEADLINE_ABORT not in msg
    }
    seconds = data["summary"]["total"]
    # Percentiles are over every response received (any status); with non-2xx present
    # the table shows their count next to them, so nothing is hidden.
    pct = data.get("latencyPercentiles") or {}

    def ms(key):
        value = pct.get(key)
        return None if value is None else value * 1000.0

    return {
        "ok": ok,
        "non2xx": non2xx,
        "errors": errors,
        "seconds": seconds,
        "ok_per_sec": ok / seconds if seconds else 0.0,
        "p50": ms("p50"),
        "p95": ms("p95"),
        "p99": ms("p99"),
    }


def fmt_ms(value):
    return "n/a" if value is None else f"{value:.2f} ms"


def fmt_counts(counts):
    total = sum(counts.values())
    if not total:
        return "0"
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str))
    return f"{total} ({detail})"


def check(args):
    s = stats(args.file)
    print(
        f"{s['ok']} x 2xx, non-2xx: {fmt_counts(s['non2xx'])}, errors: {fmt_counts(s['errors'])}",
        file=sys.stderr,
    )
    return 0 if s["ok"] >= args.expected else 1


def section(args):
    create = stats(args.create)
    listing = stats(args.list)

    # Targets (see RESULTS.md's header). The list target is defined at 1,000 req/s only;
    # it also needs the rate to have actually been served, all with 2xx.
    list_rate_ok = listing["ok_per_sec"] >= 0.95 * args.list_rate
    list_clean = not listing["non2xx"] and not listing["errors"]
    if args.list_rate != 1000:
        list_met = "n/a (run at a rate other than 1,000 req/s)"
    elif listing["p99"] is not None and listing["p99"] < 5.0 and list_rate_ok and list_clean:
        list_met = "yes"
    else:
        why = []
        if listing["p99"] is None or listing["p99"] >= 5.0:
            why.append("p99 too high")
        if not list_rate_ok:
            why.append("rate not sustained")
        if not list_clean:
            why.append("non-2xx or errors")
        list_met = "**no** (" + ", ".join(why) + ")"
    create_met = "yes" if create["ok_per_sec"] >= 5000 else "**no**"

    out = []
    out.append(f"## {args.date} · {args.commit}")
    out.append("")
    out.append("| | |")
    out.append("|---|---|")
    out.append(f"| Machine | {args.machine} |")
    out.append(f"| Commit | {args.commit} |")
    out.append(f"| oha | {args.oha_version} |")
    out.append(f"| Flow binary | {args.flow_bin} |")
    out.append(f"| Dataset | {args.dataset} |")
    out.append(f"| Run | `{args.run_command}` |")
    out.append("")
    out.append(
        "| Benchmark | Load | 2xx | non-2xx | errors | 2xx/s | p50 | p95 | p99 | CPU Flow | CPU oha | CPU else |"
    )
    out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    rows = [
        ("lead list `GET /leads?status=NEW&limit=20`", args.list_load, listing, args.list_cpu),
        ("lead create `POST /leads`", args.create_load, create, args.create_cpu),
    ]
    for name, load, s, cpu in rows:
        flow_cpu, oha_cpu, else_cpu = cpu.split(",")
        out.append(
            f"| {name} | {load} | {s['ok']} | {fmt_counts(s['non2xx'])} | {fmt_counts(s['errors'])} "
            f"| {s['ok_per_sec']:,.0f} | {fmt_ms(s['p50'])} | {fmt_ms(s['p95'])} | {fmt_ms(s['p99'])} "
            f"| {flow_cpu}% | {oha_cpu}% | {else_cpu}% |"
        )
    out.append("")
    out.append("| Target | Measured | Met |")
    out.append("|---|---|---|")
    out.append(
        f"| list p99 < 5 ms at 1,000 req/s | p99 {fmt_ms(listing['p99'])} "
        f"at {listing['ok_per_sec']:,.0f} 2xx/s | {list_met} |"
    )
    out.append(
        f"| create >= 5,000 leads/s (embedded database, 2-core machine) "
        f"| {create['ok_per_sec']:,.0f} leads/s | {create_met} |"
    )
    out.append("")
    out.append("oha commands (`$KEY` is the bench key created for the run):")
    out.append("")
    out.append("```")
    out.append(args.list_command)
    out.append(args.create_command)
    out.append("```")
    if args.note:
        out.append("")
        out.append(args.note)
    out.append("")
    print("\n".join(out))

    # A short summary for the terminal.
    print(
        f"list:   p50 {fmt_ms(listing['p50'])}, p95 {fmt_ms(listing['p95'])}, p99 {fmt_ms(listing['p99'])} "
        f"at {listing['ok_per_sec']:,.0f} 2xx/s; non-2xx {fmt_counts(listing['non2xx'])}; "
        f"errors {fmt_counts(listing['errors'])} -> target met: {list_met}",
        file=sys.stderr,
    )
    print(
        f"create: {create['ok_per_sec']:,.0f} 2xx/s, p50 {fmt_ms(create['p50'])}, p99 {fmt_ms(create['p99'])}; "
        f"non-2xx {fmt_counts(create['non2xx'])}; errors {fmt_counts(create['errors'])} "
        f"-> target met: {create_met}",
        file=sys.stderr,
    )
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("file")
    c.add_argument("expected", type=int)
    s = sub.add_parser("section")
    for name in [
        "create", "list", "date", "commit", "machine", "oha-version",
        "flow-bin", "dataset", "run-command", "list-load", "create-load",
        "list-command", "create-command",
    ]:
        s.add_argument("--" + name, required=True)
    s.add_argument("--list-rate", type=int, required=True)
    # "FLOW,OHA,ELSE": CPU in % of one core (200% = both cores of a 2-core machine).
    s.add_argument("--list-cpu", default="n/a,n/a,n/a")
    s.add_argument("--create-cpu", default="n/a,n/a,n/a")
    s.add_argument("--note", default="")
    args = parser.parse_args()
    return check(args) if args.cmd == "check" else section(args)


if __name__ == "__main__":
    sys.exit(main())
