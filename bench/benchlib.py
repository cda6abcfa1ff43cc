"""What the benchmark drivers share: free ports, /proc readings, and an
`svcmap agent` (and VictoriaMetrics) run for the length of a measurement."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def samples(text):
    """An exposition's samples: "name{labels}" -> value."""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def slope(xs, ys):
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


class Agent:
    """`svcmap agent` on a free loopback port, until stopped; ready when its
    start-up seed is done (/readyz)."""

    def __init__(self, svcmap, extra=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [svcmap, "agent", "--listen", f"127.0.0.1:{self.port}", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.get("/readyz")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("agent exited: " + self.proc.stderr.read())
                time.sleep(0.1)
        raise RuntimeError("agent did not come up in 60 s")

    def get(self, path, timeout=60):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return r.read().decode()

    def metric(self, name):
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        """SIGTERM (a last push, with remote write); its stderr."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


class VictoriaMetrics:
    """Debian's victoria-metrics on a free port, its data in a temporary
    directory; queries see the newest samples (-search.latencyOffset=0s)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="svcmap-bench-vm-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            ["victoria-metrics", "-storageDataPath", self.dir, "-httpListenAddr",
             f"127.0.0.1:{self.port}", "-search.latencyOffset=0s", "-loggerLevel", "ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.base + "/health", timeout=5).read()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("victoria-metrics did not come up")

    @property
    def write_url(self):
        return self.base + "/api/v1/write"

    def query(self, promql):
        # nocache: the rollup cache may hold an answer from before the last push.
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql, "nocache": "1"})
        with urllib.request.urlopen(url, timeout=60) as r:
            import json
            doc = json.loads(r.read())
        if doc.get("status") != "success":
            raise RuntimeError(f"{promql}: {doc}")
        return doc["data"]["result"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
