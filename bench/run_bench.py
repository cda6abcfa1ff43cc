#!/usr/bin/env python3
"""svcmap overhead benchmark: throughput untraced, under `svcmap agent` and
under `svcmap trace` (connect/request/close, kept-alive request/response,
streaming), BPF and agent CPU per connection, per-program cost from BPF
run-time statistics beside an equivalent bpftrace script, and ring-buffer
drops at the highest connection rate.

Run as root from the repository:  sudo bench/run_bench.py [--pairs 10]
All traffic is on 127.0.0.1; every run is bounded by --seconds.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Agent, cpu_seconds  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def busy_jiffies():
    """CPU time spent by the whole machine (all CPUs, user + kernel + irq)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle


# Throughput modes: (name, load generator mode, its options).
MODES = (
    ("crr", "crr", ("--threads", "2")),
    ("rr-1B-1c", "rr", ("--size", "1", "--conns", "1")),
    ("rr-64B-1c", "rr", ("--size", "64", "--conns", "1")),
    ("rr-1B-8c", "rr", ("--size", "1", "--conns", "8")),
    ("rr-64B-8c", "rr", ("--size", "64", "--conns", "8")),
    ("stream", "stream", ()),
)


def loadgen(args, mode, threads=None, pin=True, with_cpu=False, extra=None):
    """Runs the load generator; returns its rate (and machine CPU per op)."""
    argv = [args.loadgen, mode, "--seconds", str(args.seconds), "--pin", "1" if pin else "0"]
    if extra is not None:
        argv += list(extra)
    elif mode == "crr":
        argv += ["--threads", str(threads or args.threads)]
    before = busy_jiffies()
    result = json.loads(sh(*argv))
    cpu = (busy_jiffies() - before) / os.sysconf("SC_CLK_TCK")
    if with_cpu:
        return result["rate"], cpu / result["ops"]
    return result["rate"]


class Tracer:
    """A running attachment (`svcmap trace` or bpftrace), its output discarded.
    Ready once `ready` shows up on stderr, or on stdout when stdout_ready
    (bpftrace announces itself there, so stdout goes to a scratch file)."""

    def __init__(self, argv, ready, stdout_ready=False):
        self.scratch = None
        if stdout_ready:
            self.scratch = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdout=self.scratch or subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        self.err = ""
        while time.time() < deadline:
            if stdout_ready:
                self.scratch.seek(0)
                if ready in self.scratch.read(4096):
                    return
                time.sleep(0.1)
            else:
                line = self.proc.stderr.readline()
                self.err += line
                if ready in line:
                    return
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError(f"{argv[0]} did not attach: {self.err}{self.proc.stderr.read()}")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        self.err += err
        if self.scratch:
            self.scratch.close()
        return self.err


def svcmap_tracer(args, tcp_health=True):
    return Tracer([args.svcmap, "--backend", args.backend, "trace", "--json",
                   "--tcp-health", "true" if tcp_health else "false"], "svcmap: tracing")


class AgentTracer:
    """`svcmap agent` (the production mode) as a tracer: ready once its
    start-up seed is done; drops read from its /metrics before it stops."""

    def __init__(self, args):
        self.agent = Agent(args.svcmap, ["--backend", args.backend])
        self.pid = self.agent.proc.pid

    def drops(self):
        return int(self.agent.metric('svcmap_drops_total{stage="kernel_ringbuf"}'))

    def stop(self):
        return self.agent.stop()


def agent_tracer(args):
    return AgentTracer(args)


def bpftrace_tracer(args):
    return Tracer(["bpftrace", os.path.join(ROOT, "bench", "equivalent.bt")], "Attaching",
                  stdout_ready=True)


def drops(err):
    for line in err.splitlines():
        if "ring-buffer drops" in line:
            return int(line.split(" events, ")[1].split()[0])
    raise RuntimeError("no stats line from svcmap: " + err)


# Program names as bpftool shows them: the kernel keeps 15 characters, and
# bpftool restores longer ones from BTF where it can, so list both.
PROGRAMS = {
    "svcmap": ("btf_set_state", "btf_send", "btf_recv", "btf_destroy", "tp_accept4", "tp_accept",
               "btf_fork",
               "tp_set_state", "tp_send", "tp_recv", "tp_destroy",
               "fentry_connect", "fexit_accept", "fexit_send", "fexit_recv", "fentry_destroy",
               "kprobe_connect", "kretprobe_accept", "kretprobe_accep", "kprobe_send", "kretprobe_send",
               "kprobe_recv", "kretprobe_recv", "kprobe_destroy"),
    "bpftrace": ("inet_sock_set_s", "sock_send_lengt", "sock_recv_lengt", "tcp_destroy_soc"),
}


def prog_stats(tool):
    """run_time_ns and run_cnt of every loaded program of `tool`."""
    out = {}
    for p in json.loads(sh("bpftool", "prog", "show", "--json")):
        if p.get("name") in PROGRAMS[tool]:
            out[p["name"]] = (p.get("run_time_ns", 0), p.get("run_cnt", 0))
    return out


def cost_per_call(make_tracer, tool, args):
    tracer = make_tracer(args)
    try:
        before = prog_stats(tool)
        loadgen(args, "crr")
        loadgen(args, "stream")
        after = prog_stats(tool)
    finally:
        tracer.stop()
    result = {}
    for name, (t1, c1) in after.items():
        t0, c0 = before.get(name, (0, 0))
        if c1 > c0:
            result[name] = {"ns_per_call": round((t1 - t0) / (c1 - c0), 1), "calls": c1 - c0}
    return result


def cost_per_connection(make_tracer, args):
    """BPF run time per connection (all our programs, from BPF_ENABLE_STATS)
    and, for the agent, its own userspace CPU per connection, over one crr
    run of the default shape."""
    tracer = make_tracer(args)
    try:
        before = prog_stats("svcmap")
        cpu0 = cpu_seconds(tracer.pid) if hasattr(tracer, "pid") else None
        argv = [args.loadgen, "crr", "--seconds", str(args.seconds), "--pin", "1",
                "--threads", str(args.threads)]
        ops = json.loads(sh(*argv))["ops"]
        cpu1 = cpu_seconds(tracer.pid) if cpu0 is not None else None
        after = prog_stats("svcmap")
    finally:
        tracer.stop()
    ns = sum(t1 - before.get(n, (0, 0))[0] for n, (t1, _) in after.items())
    per_prog = {n: {"ns_per_conn": round((t1 - before.get(n, (0, 0))[0]) / ops, 1),
                    "calls_per_conn": round((c1 - before.get(n, (0, 0))[1]) / ops, 2)}
                for n, (t1, c1) in after.items() if c1 > before.get(n, (0, 0))[1]}
    out = {"connections": ops, "bpf_ns_per_conn": round(ns / ops, 1), "programs": per_prog}
    if cpu0 is not None:
        out["userspace_ns_per_conn"] = round((cpu1 - cpu0) * 1e9 / ops, 1)
    return out


def throughput(args, name, mode, extra):
    """Alternating triples: untraced, under `svcmap agent`, under `svcmap
    trace`, the order rotating so that drift favours none."""
    kinds = ("none", "agent", "trace")
    rates = {k: [] for k in kinds}
    ratios = {k: [] for k in kinds[1:]}
    cpu_ratios = {k: [] for k in kinds[1:]}
    drops_seen = {k: 0 for k in kinds[1:]}
    for i in range(args.pairs):
        order = kinds[i % 3:] + kinds[:i % 3]
        rate, cpu = {}, {}
        for kind in order:
            if kind == "none":
                rate[kind], cpu[kind] = loadgen(args, mode, with_cpu=True, extra=extra)
                continue
            t = agent_tracer(args) if kind == "agent" else svcmap_tracer(args)
            rate[kind], cpu[kind] = loadgen(args, mode, with_cpu=True, extra=extra)
            if kind == "agent":
                drops_seen[kind] += t.drops()
                t.stop()
            else:
                drops_seen[kind] += drops(t.stop())
        for k in kinds:
            rates[k].append(rate[k])
        for k in kinds[1:]:
            ratios[k].append(rate[k] / rate["none"])
            cpu_ratios[k].append(cpu[k] / cpu["none"])
        print(f"{name} pair {i + 1}: none {rate['none']:.0f}/s  agent {rate['agent']:.0f}/s "
              f"({ratios['agent'][-1]:.4f}, cpu {cpu_ratios['agent'][-1]:.4f})  trace "
              f"{rate['trace']:.0f}/s ({ratios['trace'][-1]:.4f}, cpu "
              f"{cpu_ratios['trace'][-1]:.4f})", flush=True)
    out = {"untraced_median": statistics.median(rates["none"])}
    for k in kinds[1:]:
        out[k] = {"median": statistics.median(rates[k]),
                  "median_pair_ratio": statistics.median(ratios[k]),
                  "pair_ratios": ratios[k],
                  "median_cpu_per_op_ratio": statistics.median(cpu_ratios[k]),
                  "cpu_per_op_ratios": cpu_ratios[k],
                  "ringbuf_drops": drops_seen[k]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--modes", default="", help="comma-separated subset of: " +
                    ", ".join(m[0] for m in MODES))
    ap.add_argument("--no-bpftrace", action="store_true", help="leave out the bpftrace baseline")
    ap.add_argument("--no-max-rate", action="store_true",
                    help="leave out the drop count at the highest connection rate")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--svcmap", default=os.path.join(ROOT, "build", "svcmap"))
    ap.add_argument("--backend", default="auto", choices=("auto", "fentry", "kprobe", "tracepoint"))
    ap.add_argument("--loadgen", default=os.path.join(ROOT, "build", "bench", "svcmap-loadgen"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    ap.add_argument("--health-only", action="store_true",
                    help="only the side-by-side run with and without the TCP health fields")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run_bench.py: must run as root (it loads BPF programs)")

    stats_path = "/proc/sys/kernel/bpf_stats_enabled"
    stats_was = open(stats_path).read().strip()
    results = {"kernel": os.uname().release, "backend": args.backend, "pairs": args.pairs,
               "seconds": args.seconds, "threads": args.threads}
    try:
        if args.health_only:
            # The per-connection health fields (issue 13): svcmap trace
            # with and without them, alternating, on connect/close, and
            # their BPF cost per call.
            open(stats_path, "w").write("0")
            results["health"] = health_pairs(args)
            open(stats_path, "w").write("1")
            for on in (True, False):
                results["health"][f"cost_{'with' if on else 'without'}"] = cost_per_call(
                    lambda a, on=on: svcmap_tracer(a, tcp_health=on), "svcmap", args)
            open(stats_path, "w").write("0")
            h = results["health"]
            print(f"health: crr throughput ratio with/without {h['median_pair_ratio']:.4f}, "
                  f"CPU per op ratio {h['median_cpu_per_op_ratio']:.4f}", flush=True)
            return finish(args, results, modes=())

        # 1. Throughput per mode, untraced / agent / trace side by side.
        open(stats_path, "w").write("0")
        wanted = [m for m in MODES if not args.modes or m[0] in args.modes.split(",")]
        results["modes"] = {}
        for name, mode, extra in wanted:
            results["modes"][name] = throughput(args, name, mode, extra)

        # 1b. BPF and agent userspace per connection.
        open(stats_path, "w").write("1")
        results["per_connection"] = {"agent": cost_per_connection(agent_tracer, args),
                                     "trace": cost_per_connection(svcmap_tracer, args)}
        open(stats_path, "w").write("0")
        print(json.dumps(results["per_connection"], indent=2), flush=True)

        # 2. Per-program cost, svcmap and bpftrace in the same run.
        open(stats_path, "w").write("1")
        results["cost_svcmap"] = cost_per_call(svcmap_tracer, "svcmap", args)
        try:
            if args.no_bpftrace:
                raise RuntimeError("left out (--no-bpftrace)")
            results["cost_bpftrace"] = cost_per_call(bpftrace_tracer, "bpftrace", args)
        except RuntimeError as e:
            # e.g. a kernel before 6.3 has no sock_send_length for the script.
            results["cost_bpftrace"] = {}
            results["bpftrace_error"] = str(e).splitlines()[-1]
            print(f"bpftrace baseline skipped: {results['bpftrace_error']}", flush=True)
        open(stats_path, "w").write("0")

        # 3. Drops at the highest connection rate this machine reaches,
        #    under the agent (its default 4 MiB ring) and under trace.
        results["max_rate"] = {}
        for kind in () if args.no_max_rate else ("agent", "trace"):
            best = None
            for threads in (1, 2, 4, 8):
                if kind == "agent":
                    t = agent_tracer(args)
                    rate = loadgen(args, "crr", threads, pin=False)
                    d = t.drops()
                    t.stop()
                else:
                    t = svcmap_tracer(args)
                    rate = loadgen(args, "crr", threads, pin=False)
                    d = drops(t.stop())
                print(f"max-rate {kind}: {threads} threads, {rate:.0f} conn/s, {d} drops",
                      flush=True)
                if best is None or rate > best["rate"]:
                    best = {"threads": threads, "rate": rate, "ringbuf_drops": d}
            results["max_rate"][kind] = best
    finally:
        open(stats_path, "w").write(stats_was)
    finish(args, results)


def health_pairs(args):
    """crr under svcmap trace, with the TCP health fields and without."""
    on, off, ratios, cpu_ratios = [], [], [], []
    for i in range(args.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        rates, cpus = {}, {}
        for health in order:
            t = svcmap_tracer(args, tcp_health=health)
            rates[health], cpus[health] = loadgen(args, "crr", with_cpu=True)
            t.stop()
        on.append(rates[True])
        off.append(rates[False])
        ratios.append(rates[True] / rates[False])
        cpu_ratios.append(cpus[True] / cpus[False])
        print(f"health pair {i + 1}: without {rates[False]:.0f}/s  with {rates[True]:.0f}/s"
              f"  ratio {ratios[-1]:.4f}  cpu/op ratio {cpu_ratios[-1]:.4f}", flush=True)
    return {"without_median": statistics.median(off), "with_median": statistics.median(on),
            "median_pair_ratio": statistics.median(ratios), "pair_ratios": ratios,
            "median_cpu_per_op_ratio": statistics.median(cpu_ratios),
            "cpu_per_op_ratios": cpu_ratios}


def finish(args, results, modes=None):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({k: v for k, v in results.items() if k != "modes"}, indent=2))
    for name, r in results.get("modes", {}).items():
        for kind in ("agent", "trace"):
            k = r[kind]
            print(f"{name:10} {kind:5}: throughput ratio (median of pairs) "
                  f"{k['median_pair_ratio']:.4f}, CPU per op ratio "
                  f"{k['median_cpu_per_op_ratio']:.4f}, drops {k['ringbuf_drops']}")


if __name__ == "__main__":
    main()
