#!/usr/bin/env python3
"""svcmap agent benchmark (issue 5): resident memory with 65,536 live
connections, user-side event ingest on one core, and the agent's CPU at
10,000 connections per second, each beside its target in one run.

Run as root from the repository, after building:  sudo bench/agent_bench.py
All traffic is on 127.0.0.1; every phase is bounded in time.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, Agent, cpu_seconds, status_kib  # noqa: E402


def memory(args):
    """RSS of the agent while it tracks --conns live connections."""
    agent = Agent(args.svcmap, ["--max-sockets", str(4 * args.conns), "--max-series",
                                str(4 * args.conns)])
    try:
        idle_rss = status_kib(agent.proc.pid, "VmRSS")
        hold = subprocess.Popen([args.loadgen, "hold", "--conns", str(args.conns),
                                 "--seconds", "300", "--size", "100"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = hold.stdout.readline().strip()
            if line != "held":
                raise RuntimeError(f"loadgen hold: {line!r}")
            # Every request reads the kernel's live table and builds the view:
            # the agent's busiest moments. Its steady state is /metrics (and
            # remote write, the same view); /api/snapshot, a dump with one
            # row per connection, is measured after it, apart.
            for _ in range(args.scrapes):
                agent.get("/metrics")
            rss = status_kib(agent.proc.pid, "VmRSS")
            hwm = status_kib(agent.proc.pid, "VmHWM")
            snap = json.loads(agent.get("/api/snapshot"))
            flows = len(snap["traffic"])
            conns = sum(c["connections"] for c in snap["connections"])
            snap_rss = status_kib(agent.proc.pid, "VmRSS")
            snap_hwm = status_kib(agent.proc.pid, "VmHWM")
        finally:
            hold.stdin.close()
            hold.wait(timeout=120)
    finally:
        agent.stop()
    return {"conns": args.conns, "connections_in_snapshot": conns, "traffic_rows": flows,
            "idle_rss_kib": idle_rss, "rss_kib": rss, "peak_rss_kib": hwm,
            "target_kib": 50 * 1024, "peak_over_target": round(hwm / (50 * 1024), 3),
            "after_snapshot_rss_kib": snap_rss, "after_snapshot_peak_rss_kib": snap_hwm}


def ingest(args):
    out = subprocess.run([args.ingestbench, "--events", str(args.events), "--rounds",
                          str(args.rounds)], check=True, capture_output=True, text=True)
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    for r in rows:
        r["target_events_per_s"] = 2_000_000
        r["median_over_target"] = round(r["events_per_s_median"] / 2_000_000, 3)
    if out.returncode != 0 or not rows:
        raise RuntimeError(out.stderr)
    return rows


def cpu(args):
    """The agent's own CPU time while crr runs at --rate, scraped every second."""
    agent = Agent(args.svcmap)
    try:
        time.sleep(1)
        before, t0 = cpu_seconds(agent.proc.pid), time.time()
        load = subprocess.Popen([args.loadgen, "crr", "--threads", "2", "--seconds",
                                 str(args.seconds), "--rate", str(args.rate)],
                                stdout=subprocess.PIPE, text=True)
        scrapes = 0
        while load.poll() is None:
            agent.get("/metrics")
            scrapes += 1
            time.sleep(1)
        result = json.loads(load.stdout.read())
        after, t1 = cpu_seconds(agent.proc.pid), time.time()
        closes = agent.metric('svcmap_events_total{type="close"}') or None
        drops = agent.metric('svcmap_drops_total{stage="kernel_ringbuf"}')
    finally:
        agent.stop()
    share = (after - before) / (t1 - t0)
    return {"rate_asked": args.rate, "rate_reached": round(result["rate"]),
            "seconds": round(t1 - t0, 2), "scrapes": scrapes, "agent_cpu_s": round(after - before, 2),
            "agent_core_share": round(share, 4), "target_core_share": 0.05,
            "share_over_target": round(share / 0.05, 3), "ringbuf_drops": drops,
            "close_events": closes}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--conns", type=int, default=65536)
    p.add_argument("--scrapes", type=int, default=3)
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rate", type=int, default=10000)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--only", choices=["memory", "ingest", "cpu"])
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "agent.json"))
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("agent_bench: must run as root (the agent loads BPF programs)")
    args.svcmap = os.path.join(args.build, "svcmap")
    args.loadgen = os.path.join(args.build, "bench", "svcmap-loadgen")
    args.ingestbench = os.path.join(args.build, "bench", "svcmap-ingestbench")
    results = {}
    for name, fn in (("memory", memory), ("ingest", ingest), ("cpu", cpu)):
        if args.only and args.only != name:
            continue
        print(f"== {name}", file=sys.stderr)
        results[name] = fn(args)
        print(json.dumps(results[name], indent=2))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
