#!/usr/bin/env python3
"""Results of bench/postgres/run.sh as markdown.

  report.py brief RUNS.jsonl NAME       one line about one measured run (for the log)
  report.py section RUNS.jsonl [opts]   the RESULTS.md section

Reads the oha JSON files (and the create driver's files, which have the same shape) through
bench/report.py's stats(): only 2xx count as successes; a GraphQL answer carrying "errors"
is counted by the driver as status 600, not as a success.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from report import stats  # noqa: E402  bench/report.py


def load_runs(path):
    with open(path) as f:
        return {r["name"]: r for r in (json.loads(line) for line in f if line.strip())}


def summary(run):
    parts = [stats(p) for p in run["files"]]
    ok = sum(s["ok"] for s in parts)
    rate = sum(s["ok_per_sec"] for s in parts)
    p50 = max((s["p50"] for s in parts if s["p50"] is not None), default=None)
    p99 = max((s["p99"] for s in parts if s["p99"] is not None), default=None)
    bad = {}
    for s in parts:
        for k, v in list(s["non2xx"].items()) + list(s["errors"].items()):
            bad[str(k)] = bad.get(str(k), 0) + v
    seconds = max(s["seconds"] for s in parts)
    w0 = [int(x) for x in run["wal0"].split()]
    w1 = [int(x) for x in run["wal1"].split()]
    return {
        "ok": ok,
        "rate": rate,
        "p50": p50,
        "p99": p99,
        "bad": bad,
        "seconds": seconds,
        "rows": run["rows"],
        "wal_sync_s": (w1[2] - w0[2]) / seconds if seconds else None,
        "wal_bytes_per_ok": (w1[1] - w0[1]) / ok if ok else None,
        "per_instance": [(s["ok_per_sec"], s["p50"], s["p99"]) for s in parts],
    }


def ms(x):
    return "n/a" if x is None else (f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms")


def num(x):
    return "n/a" if x is None else f"{x:,.0f}"


def bad_text(bad):
    total = sum(bad.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k}: {v}" for k, v in sorted(bad.items())) + ")"


def cpu_text(c):
    names = [("flow", "Flow"), ("postgres", "postgres"), ("node", "PostGraphile"), ("oha", "client"), ("irq", "irq/softirq"), ("else", "else"), ("steal", "steal")]
    return ", ".join(f"{label} {c[k]}%" for k, label in names if c.get(k) is not None and (c[k] or k in ("flow", "postgres", "oha", "else")))


def brief(args):
    run = load_runs(args.runs)[args.name]
    s = summary(run)
    return (
        f"{num(s['rate'])} req/s (2xx), p50 {ms(s['p50'])}, p99 {ms(s['p99'])}, failed {bad_text(s['bad'])}, "
        f"rows +{s['rows']}; CPU {cpu_text(run['cpu'])}; load before {run['load']}"
    )


def section(args):
    runs = load_runs(args.runs)
    S = {k: summary(v) for k, v in runs.items()}

    def hide(text):
        for pair in args.secrets.split(","):
            if "=" in pair:
                secret, shown = pair.split("=", 1)
                if secret:
                    text = text.replace(secret, shown)
        return text

    L = []
    L.append(f"## {args.date} · {args.commit} · PostgreSQL")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append("| Section type | PostgreSQL: Flow's REST API vs PostGraphile 5 on the same database, tables and RLS; Flow cluster 1 vs N instances (`bench/postgres`, see its README.md) |")
    L.append(f"| Machine | {args.machine} |")
    L.append(f"| Commit | {args.commit} |")
    L.append(f"| Flow binary | {args.flow_bin} |")
    L.append(f"| Versions | {args.versions} |")
    L.append(f"| PostgreSQL | a fresh throwaway cluster (`scripts/postgres start`) on 127.0.0.1: {args.pg_settings} |")
    L.append(
        f"| Setup | `flow migrate` as flow_owner (owns the schema); `flow serve` and PostGraphile both connect as flow_app (owns nothing, NOBYPASSRLS), "
        f"{args.pool} connections each (FLOW_DB_MAX_CONNECTIONS / pg pool max); PostGraphile Amber preset, production mode, `public` schema, "
        "a grafast context that verifies an HS256 Bearer JWT and sets pgSettings `app.tenant_id` = its tenant_id claim, so Flow's own policies isolate (none added) |"
    )
    L.append(f"| Data | {args.dataset} |")
    L.append(f"| Load | {args.concurrency} connections, {args.duration} s per run, one run each; the load generator on the same 2 cores. List: oha (fixed request). Create: `tools.js create`, a closed-loop Node driver (unique email per request; for PostGraphile also a new uuid v4 id, status, tenantId and timestamps from the client), the same driver for both systems |")
    L.append(f"| Memory after the runs | {args.rss} |")
    L.append(f"| Run | `{args.run_command}` |")
    L.append("")
    L.append("| Run | System | req/s (2xx) | p50 | p99 | failed | rows inserted | WAL fsyncs/s | WAL bytes per 2xx | CPU (% of one core; 200% = machine) | load avg before |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|")
    labels = {
        "flow-list": ("list NEW, limit 20", "Flow, 1 instance"),
        "gql-list": ("list NEW, first 20", "PostGraphile"),
        "cluster-list": ("list NEW, limit 20", f"Flow, {args.instances} instances"),
        "flow-create": ("create lead", "Flow, 1 instance"),
        "gql-create": ("create lead", "PostGraphile"),
        "cluster-create": ("create lead", f"Flow, {args.instances} instances"),
    }
    for name in ["flow-list", "gql-list", "cluster-list", "flow-create", "gql-create", "cluster-create"]:
        if name not in S:
            continue
        s, r = S[name], runs[name]
        extra = ""
        if len(s["per_instance"]) > 1:
            extra = " (per instance: " + "; ".join(f"{num(a)} req/s, p99 {ms(c)}" for a, b, c in s["per_instance"]) + "; p50/p99 shown are the worst instance's)"
        L.append(
            f"| {labels[name][0]} | {labels[name][1]} | **{num(s['rate'])}**{extra} | {ms(s['p50'])} | {ms(s['p99'])} | {bad_text(s['bad'])} | "
            f"{num(s['rows']) if r['kind'] == 'create' else '-'} | {num(s['wal_sync_s'])} | {num(s['wal_bytes_per_ok'])} | {cpu_text(r['cpu'])} | {r['load']} |"
        )
    L.append("")

    def ratio(a, b):
        return S[a]["rate"] / S[b]["rate"] if a in S and b in S and S[b]["rate"] else None

    def yes(b):
        return "yes" if b else "**no**"

    rl, rc = ratio("flow-list", "gql-list"), ratio("flow-create", "gql-create")
    L.append("| Target (from the issue) | Measured | Met |")
    L.append("|---|---|---|")
    if rl is not None:
        p_ok = S["flow-list"]["p99"] <= S["gql-list"]["p99"]
        L.append(f"| list: Flow >= 3x PostGraphile's throughput at equal or better p99 | {rl:.2f}x; p99 {ms(S['flow-list']['p99'])} vs {ms(S['gql-list']['p99'])} | {yes(rl >= 3 and p_ok)} |")
    if rc is not None:
        p_ok = S["flow-create"]["p99"] <= S["gql-create"]["p99"]
        L.append(f"| create: Flow >= 2x PostGraphile's throughput at equal or better p99 | {rc:.2f}x; p99 {ms(S['flow-create']['p99'])} vs {ms(S['gql-create']['p99'])} | {yes(rc >= 2 and p_ok)} |")
    L.append("")
    if "cluster-list" in S or "cluster-create" in S:
        L.append(f"| Cluster | 1 instance | {args.instances} instances | ratio |")
        L.append("|---|--:|--:|--:|")
        for kind in ["list", "create"]:
            a, b = f"flow-{kind}", f"cluster-{kind}"
            if a in S and b in S:
                L.append(f"| {kind} req/s | {num(S[a]['rate'])} | {num(S[b]['rate'])} | {S[b]['rate'] / S[a]['rate']:.2f}x |")
        L.append("")
    stmt_runs = [("flow-create", "Flow create (1 instance)"), ("gql-create", "PostGraphile create"), ("flow-list", "Flow list (1 instance)"), ("gql-list", "PostGraphile list")]
    if any(os.path.exists(runs[n]["stmts"]) and os.path.getsize(runs[n]["stmts"]) for n, _ in stmt_runs if n in runs):
        L.append("Top 5 statements by total execution time during the run (pg_stat_statements, database `flow`, reset before each run; COMMIT includes the WAL flush):")
        L.append("")
        for name, title in stmt_runs:
            if name not in runs or not os.path.exists(runs[name]["stmts"]):
                continue
            L.append(f"*{title}*, {num(S[name]['ok'])} requests answered 2xx:")
            L.append("")
            L.append("| calls | total ms | mean ms | rows | statement |")
            L.append("|--:|--:|--:|--:|---|")
            with open(runs[name]["stmts"]) as f:
                for line in f:
                    parts = line.rstrip("\n").split("|", 4)
                    if len(parts) == 5:
                        L.append(f"| {parts[0]} | {parts[1]} | {parts[2]} | {parts[3]} | `{parts[4].replace('`', chr(39))}` |")
            L.append("")
    L.append("Commands (one per load generator; cluster runs start one per instance in parallel):")
    L.append("")
    for name in ["flow-list", "gql-list", "cluster-list", "flow-create", "gql-create", "cluster-create"]:
        if name in runs:
            for c in runs[name]["commands"]:
                L.append(f"- {name}: `{hide(c)}`")
    L.append("")
    L.append(
        "Columns: **req/s** = 2xx answers per second (GraphQL answers with `errors` are failures); **p50/p99** over every answer; **rows inserted** = leads in the table after minus before (checks the 2xx count); "
        "**WAL fsyncs/s** and **bytes per 2xx** from pg_stat_wal; **CPU** from /proc over the run: Flow (all instances), postgres (all backends and helpers), PostGraphile (its Node process), "
        "client (oha or the create driver), irq/softirq (kernel time owned by no process, mostly loopback TCP), else (everything else on the machine: another job competing with the run), steal (time the hypervisor gave to other guests)."
    )
    L.append(
        "Not the same work: Flow's create validates the input, finds or creates the contact (unique email per tenant), inserts the lead, an activity, an audit row and two events "
        "(taking the tenant's event-counter row lock) in one transaction and answers with the lead; PostGraphile's createLead inserts one row the client made up (id, tenant, status, timestamps) and "
        "returns it. The list is the same work: the same 20 rows (checked to be identical) with the same fields."
    )
    return "\n".join(L)


def queue(args):
    with open(args.runs) as f:
        data = json.load(f)
    S = data["settings"]
    names = {"flow-pg": "Flow (PostgreSQL)", "pgboss": "pg-boss"}
    L = [f"## {args.date} · {args.commit} · PostgreSQL queue", ""]
    L += ["| | |", "|---|---|"]
    L.append("| Section type | PostgreSQL queue: Flow's durable queue on PostgreSQL vs pg-boss on the same server, same run (`bench/postgres/queue.sh`, see its README.md) |")
    L.append(f"| Machine | {args.machine} |")
    L.append(f"| Commit | {args.commit} |")
    L.append(f"| Flow binary | {args.flow_bin} |")
    L.append(f"| Versions | {args.versions} |")
    L.append(f"| PostgreSQL | one throwaway cluster for every run (`scripts/postgres start`), 127.0.0.1: {args.pg_settings}; a fresh database per run |")
    best = data["best"]
    if "flow-pg" in best:
        b = best["flow-pg"]
        L.append(
            f"| Flow | `flow migrate` as flow_owner, `flow serve` as flow_app (RLS) with `FLOW_WORKER_CONCURRENCY={b['concurrency']} FLOW_WORKER_BATCH={b['batch']} FLOW_DB_MAX_CONNECTIONS={b['pool']}` "
            f"({'given' if S['flowSetting'] else 'best of the sweep'}); jobs of kind `ping` in `{S['queue']}`, `POST /admin/queues/{S['queue']}/jobs` with {S['batch']:,} per request, one request at a time |"
        )
    if "pgboss" in best:
        b = best["pgboss"]
        L.append(
            f"| pg-boss | its own database, queue created with `partition: true`; one worker process, `work(batchSize: {b['batchSize']}, localConcurrency: {b['localConcurrency']}, burstWhenBatchFull: true)`, "
            f"pool max {b['pool']}, returning `{{pong: data}}`; `insert()` of {S['batch']:,} jobs at a time, one call at a time ({'given' if S['bossSetting'] else 'best of the sweep'}) |"
        )
    L.append(f"| Workload | N = {S['n']:,} no-op jobs per run (payload `{{}}`); {S['repeat']} runs of each system with its best setting, systems alternating; the table shows the median run by jobs/s |")
    q = data["quietStart"]
    L.append(f"| Load average | {q['load']} at the start after waiting {q['waitedS']} s (limit {S['quietLoad']}); at the end {data['loadEnd']} |")
    L.append(f"| Run | `{args.run_command}` |")
    L.append("")

    def cpu(r):
        c = r["cpu"]
        parts = [f"Flow {c['flow']}%" if r["system"] == "flow-pg" else f"worker {c.get('worker', 0)}%", f"postgres {c['postgres']}%", f"driver {c['driver']}%", f"else {c['else']}%"]
        return ", ".join(parts)

    def lat(r):
        return f"{r['p50Ms']:.0f} / {r['p99Ms']:.0f} ms"

    for system, sweep in data["sweeps"].items():
        if not sweep:
            continue
        L.append(f"{names[system]} settings, {S['sweepRepeat']} run(s) each, alternating; the best mean is used below:")
        L.append("")
        L.append("| setting | jobs/s, mean | runs | p50 / p99 | CPU (each run) |")
        L.append("|---|--:|---|---|---|")
        order = []
        for r in sweep:
            if r["setting"] not in order:
                order.append(r["setting"])
        for name in order:
            rs = [r for r in sweep if r["setting"] == name]
            ok = [r for r in rs if "error" not in r]
            m = sum(r["jobsPerS"] for r in ok) / len(ok) if ok else None
            used = " (used)" if name == best[system]["name"] else ""
            L.append(
                f"| {name}{used} | {num(m)} | {', '.join([num(r['jobsPerS']) for r in ok] + ['failed: ' + r['error'][:80] for r in rs if 'error' in r])} | "
                f"{'; '.join(lat(r) for r in ok)} | {'; '.join(cpu(r) for r in ok)} |"
            )
        L.append("")
    L.append("| System | jobs/s end to end | range of runs | enqueue jobs/s | p50 | p99 | CPU (% of one core) | load avg before |")
    L.append("|---|--:|---|--:|--:|--:|---|---|")
    med = {}
    for system in S["systems"]:
        rs = [r for r in data["runs"] if r["system"] == system]
        ok = sorted([r for r in rs if "error" not in r], key=lambda r: r["jobsPerS"])
        if not ok:
            L.append(f"| {names[system]} | failed: {'; '.join(r['error'] for r in rs)[:200]} | | | | | | |")
            continue
        m = ok[(len(ok) - 1) // 2]
        med[system] = m
        L.append(
            f"| {names[system]} ({m['setting']}) | **{num(m['jobsPerS'])}** | {num(ok[0]['jobsPerS'])}–{num(ok[-1]['jobsPerS'])} ({len(ok)} runs{', ' + str(len(rs) - len(ok)) + ' failed' if len(rs) > len(ok) else ''}) | "
            f"{num(m['enqueuePerS'])} | {m['p50Ms']:.0f} ms | {m['p99Ms']:.0f} ms | {cpu(m)} | {m['loadBefore']} |"
        )
    L.append("")
    L.append("| Target (from the issue) | Measured | Met |")
    L.append("|---|---|---|")
    f = med.get("flow-pg")
    b = med.get("pgboss")
    if f:
        L.append(f"| >= 5,000 jobs/s end to end on PostgreSQL | {num(f['jobsPerS'])} jobs/s | {'yes' if f['jobsPerS'] >= 5000 else '**no**'} |")
    if f and b:
        r = f["jobsPerS"] / b["jobsPerS"]
        L.append(f"| faster than pg-boss | {r:.2f}x ({num(f['jobsPerS'])} vs {num(b['jobsPerS'])} jobs/s) | {'yes' if r > 1 else '**no**'} |")
    L.append("")
    for system, m in med.items():
        if m.get("statements"):
            L.append(f"Top 5 statements by total execution time, {names[system]} median run (pg_stat_statements, the run's database, reset just before the first enqueue):")
            L.append("")
            L.append("| calls | total ms | mean ms | rows | statement |")
            L.append("|--:|--:|--:|--:|---|")
            for st in m["statements"]:
                L.append(f"| {st['calls']} | {st['total_ms']:.0f} | {st['mean_ms']} | {st['rows']} | `{st['query'].replace('`', chr(39)).replace('|', '/')}` |")
            L.append("")
    L.append(
        "Columns: **jobs/s end to end** = N / (the last job's own finish time (Flow `finished_at`, pg-boss `completed_on`) − just before the first enqueue); **enqueue jobs/s** = N / time until the last enqueue returned; "
        "**p50/p99** of finish − creation over every job (read with SQL after the run); the driver polls the last job's row, then the counts, every 50 ms with one SQL query each, the same for both. "
        "**CPU** in % of one core (200% = both cores): Flow's server or the pg-boss worker process, postgres (all backends), the driver (the Node process that enqueues and polls; for pg-boss it also runs pg-boss's insert), else (other work on the machine). "
        "Both commit every enqueue batch and every completion durably (fsync on, synchronous_commit on)."
    )
    L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("brief")
    b.add_argument("runs")
    b.add_argument("name")
    s = sub.add_parser("section")
    s.add_argument("runs")
    for opt in ["date", "commit", "machine", "versions", "flow-bin", "pg-settings", "dataset", "pool", "concurrency", "duration", "instances", "rss", "run-command", "secrets"]:
        s.add_argument(f"--{opt}", default="")
    qp = sub.add_parser("queue")
    qp.add_argument("runs")
    for opt in ["date", "commit", "machine", "versions", "flow-bin", "pg-settings", "run-command"]:
        qp.add_argument(f"--{opt}", default="")
    args = ap.parse_args()
    print({"brief": brief, "section": section, "queue": queue}[args.cmd](args))


if __name__ == "__main__":
    main()
