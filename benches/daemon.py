"""Benchmarks of `sdop run` (issue #6), against the local AWS that benches/daemon.sh starts.

  latency   file saved -> first AWS call of the daemon, p50/p99 over N edits (goal p50 <= 100 ms)
  overhead  the train -> package -> deploy chain (examples/train-then-deploy) with fixed
            emulator durations: converged time vs the critical path's durations (goal <= 5% over)
  idle      1,000 manifests converged, then idle: RSS (goal < 50 MB) and CPU over 60 s (goal ~0)

Times come from one clock: the emulator logs each call's arrival with time.time() on this
machine (/_sdop/calls/log), and this script takes time.time() right after the rename that saves
a manifest (editors save by rename).
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request

SDOP, WORK, MODE = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
EDITS = int(os.environ.get("EDITS", "100"))
AWS = os.environ["AWS_ENDPOINT_URL"]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def call_log(since):
    return get(f"{AWS}/_sdop/calls/log?since={since}")["calls"]


class Daemon:
    def __init__(self, paths, name, *extra):
        self.state = WORK / f"state-{name}"
        self.caller = f"AKIDBENCH{name.upper()}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.caller, SDOP_STATE_DIR=str(self.state),
                   RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.log = open(WORK / f"daemon-{name}.log", "w")
        self.started = time.time()
        self.proc = subprocess.Popen([SDOP, "run", *map(str, paths), "--listen", "127.0.0.1:0", *extra],
                                     env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(600):
            try:
                self.url = json.loads((self.state / "daemon.json").read_text())["url"]
                return
            except (OSError, ValueError):
                if self.proc.poll() is not None:
                    sys.exit(f"sdop run exited: see {self.log.name}")
                time.sleep(0.01)
        sys.exit("sdop run did not start")

    def resources(self):
        return get(f"{self.url}/api/v1/status")["resources"]

    def wait(self, ready, timeout, poll=0.02):
        deadline = time.time() + timeout
        while time.time() < deadline:
            res = self.resources()
            if ready(res):
                return res
            time.sleep(poll)
        sys.exit(f"timed out; statuses: {json.dumps(self.resources(), indent=1)[:4000]}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def all_ready(n):
    return lambda res: len(res) >= n and all(r["phase"] == "Ready" for r in res)


def save(path, text):
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    tmp.rename(path)
    return time.time()


def bucket(i, tags=""):
    return (f"apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {{name: b{i}}}\n"
            f"spec:\n  bucketName: sdop-bench-{i:04d}\n  region: us-east-1\n{tags}")


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def latency():
    d = WORK / "latency"
    d.mkdir()
    save(d / "bucket.yaml", bucket(0))
    daemon = Daemon([d], "latency")
    daemon.wait(all_ready(1), 60)
    lat = []
    for i in range(EDITS):
        before = daemon.resources()[0]["observedSpecHash"]
        t0 = save(d / "bucket.yaml", bucket(0, f"  tags: {{edit: e{i}}}\n"))
        first = None
        while first is None:
            mine = [c for c in call_log(t0) if c["caller"] == daemon.caller]
            first = min((c["t"] for c in mine), default=None)
            if first is None:
                if time.time() - t0 > 10:
                    sys.exit(f"edit {i}: no AWS call within 10 s")
                time.sleep(0.005)
        lat.append((first - t0) * 1000)
        daemon.wait(lambda res: res[0]["phase"] == "Ready" and res[0]["observedSpecHash"] != before, 30, 0.01)
    daemon.stop()
    print(f"latency: file saved -> first AWS call over {len(lat)} edits: "
          f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, min {min(lat):.1f} ms, max {max(lat):.1f} ms "
          f"(default --debounce)")


def overhead():
    config = get(f"{AWS}/_sdop/config")
    training, endpoint = config["training_seconds"], config["endpoint_create_seconds"]
    d = WORK / "chain"
    shutil.copytree(ROOT / "examples/train-then-deploy", d)
    daemon = Daemon([d], "chain")
    res = daemon.wait(all_ready(5), 600, 0.05)
    converged = time.time() - daemon.started
    critical = training + endpoint
    calls = [c for c in call_log(daemon.started) if c["caller"] == daemon.caller]
    first = lambda api: min(c["t"] for c in calls if c["api"] == api) - daemon.started
    daemon.stop()
    print(f"overhead: chain converged in {converged:.2f} s; critical path of emulator durations "
          f"(training {training:g} s + endpoint creation {endpoint:g} s) = {critical:g} s; "
          f"overhead {converged - critical:.2f} s = {100 * (converged / critical - 1):.1f}% "
          f"(CreateTrainingJob at {first('sagemaker:CreateTrainingJob'):.2f} s, "
          f"CreateEndpoint at {first('sagemaker:CreateEndpoint'):.2f} s; {len(calls)} AWS calls)")


def proc_cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory(pid):
    mem = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            mem[key] = int(value.split()[0]) / 1024
    return mem


def idle():
    n = int(os.environ.get("MANIFESTS", "1000"))
    window = float(os.environ.get("IDLE_SECONDS", "60"))
    d = WORK / "idle"
    d.mkdir()
    for i in range(n // 2):
        (d / f"b{i:04d}.yaml").write_text(bucket(i))
        (d / f"r{i:04d}.yaml").write_text(
            f"apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {{name: r{i}}}\n"
            f"spec:\n  repositoryName: sd-bench-{i:04d}\n  region: us-east-1\n")
    daemon = Daemon([d], "idle")
    daemon.wait(all_ready(n), 1800, 1.0)
    converged = time.time() - daemon.started
    time.sleep(5)
    pid = daemon.proc.pid
    cpu0, t0 = proc_cpu_seconds(pid), time.time()
    time.sleep(window)
    cpu1, t1 = proc_cpu_seconds(pid), time.time()
    calls = [c for c in call_log(t0) if c["caller"] == daemon.caller]
    mem = proc_memory(pid)
    daemon.stop()
    print(f"idle: {n} manifests converged in {converged:.1f} s; then over {t1 - t0:.0f} s idle: "
          f"CPU {cpu1 - cpu0:.2f} s ({100 * (cpu1 - cpu0) / (t1 - t0):.2f}% of a core), "
          f"{len(calls)} AWS calls; RSS {mem['VmRSS']:.1f} MiB (peak {mem['VmHWM']:.1f} MiB)")


for mode in (["latency", "overhead", "idle"] if MODE == "all" else [MODE]):
    globals()[mode]()
