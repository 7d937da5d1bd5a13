#!/usr/bin/env python3
"""CPU per process group for bench/postgres (no dependencies).

  cpu.py snap FILE                       record utime+stime of every process and the machine
  cpu.py diff A B OHA_CPU_SECONDS        print JSON: % of one core (200% = both cores of a
                                         2-core machine) per group between snapshots A and B

Groups by command name: flow, postgres (every backend and helper), node (PostGraphile or
pg-boss workers), oha (given as CPU seconds: oha has exited by the time B is taken), machine
(user + system + irq + softirq time; steal is reported apart), irq (interrupts and softirq,
mostly loopback networking, owned by no process) and else (machine minus the rest: other work
that competed with the run).
Processes that started after A count from zero; ones that exited before B are lost (the
bench's postgres backends and servers live through the run).
"""
import json
import os
import sys
import time

GROUPS = {"flow": "flow", "postgres": "postgres", "node": "node"}


def snap():
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        fields = s[s.rindex(")") + 2 :].split()
        procs[pid] = [comm, int(fields[11]) + int(fields[12])]
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    total = sum(cpu[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]
    return {"t": time.time(), "procs": procs, "busy": busy, "total": total, "irq": cpu[5] + cpu[6], "steal": cpu[7], "ncpu": os.cpu_count()}


def diff(a, b, oha_seconds):
    hz = os.sysconf("SC_CLK_TCK")
    wall = b["t"] - a["t"]
    out = {k: 0.0 for k in GROUPS.values()}
    for pid, (comm, ticks) in b["procs"].items():
        group = GROUPS.get(comm)
        if group is None:
            continue
        before = a["procs"].get(pid)
        start = before[1] if before and before[0] == comm else 0
        out[group] += 100.0 * (ticks - start) / hz / wall
    out["oha"] = 100.0 * oha_seconds / wall
    dt = b["total"] - a["total"]
    out["machine"] = 100.0 * b["ncpu"] * (b["busy"] - a["busy"]) / dt if dt > 0 else None
    # Interrupt and softirq time (loopback networking is mostly softirq) belongs to no
    # process; steal is time the hypervisor gave to other guests (not busy here).
    out["irq"] = 100.0 * b["ncpu"] * (b["irq"] - a["irq"]) / dt if dt > 0 else None
    out["steal"] = 100.0 * b["ncpu"] * (b["steal"] - a["steal"]) / dt if dt > 0 else None
    if out["machine"] is not None:
        out["else"] = max(0.0, out["machine"] - sum(out[k] for k in ("flow", "postgres", "node", "oha", "irq")))
    return {k: (None if v is None else round(v)) for k, v in out.items()}


if __name__ == "__main__":
    if sys.argv[1] == "snap":
        with open(sys.argv[2], "w") as f:
            json.dump(snap(), f)
    elif sys.argv[1] == "diff":
        with open(sys.argv[2]) as f:
            a = json.load(f)
        with open(sys.argv[3]) as f:
            b = json.load(f)
        print(json.dumps(diff(a, b, float(sys.argv[4]))))
    else:
        sys.exit("usage: cpu.py snap FILE | diff A B OHA_CPU_SECONDS")
