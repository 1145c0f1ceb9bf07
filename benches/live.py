#!/usr/bin/env python3
"""Live benchmarks for `skewtail run` (issue #9), each against a baseline run in turns.

    python3 benches/live.py cpu          # 5,000 lines/s: CPU and RSS, vs `tail -F`
    python3 benches/live.py throughput   # 300,000 lines/s: does it keep up? vs `tail -F`
    python3 benches/live.py latency      # window close -> alert on stdout and at a webhook
    python3 benches/live.py churn        # RSS over 15 min with 1,000 new backends a minute

Build first: cargo build --release --bin skewtail --example live_load
The writer (examples/live_load) appends lines stamped with the wall clock when that time comes.
CPU is read from /proc/PID/stat (user + system ticks), memory from /proc/PID/status, how far
a reader is behind from /proc/PID/fdinfo (its offset in the file) against the file's size.
"""
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKEWTAIL = os.path.join(ROOT, "target/release/skewtail")
LOAD = os.path.join(ROOT, "target/release/examples/live_load")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def status_kb(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def offset_in(pid, path):
    """The reader's offset in `path` (the newest open descriptor on it), or None."""
    best = None
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                pos = int(open(f"/proc/{pid}/fdinfo/{fd}").readline().split()[1])
                best = pos if best is None else max(best, pos)
        except OSError:
            pass
    return best


def config(dir, extra=""):
    path = os.path.join(dir, "skewtail.toml")
    with open(path, "w") as f:
        f.write(extra)
        f.write('[[input]]\npath = "access.log"\nformat = "upstream"\npool = "api"\nstart_at = "end"\n')
    return path


def start_skewtail(dir, cfg, stdout=subprocess.DEVNULL):
    return subprocess.Popen(
        [SKEWTAIL, "run", "--json", "--listen", "127.0.0.1:0", "--config", cfg, "--state-dir", os.path.join(dir, "state")],
        stdout=stdout, stderr=open(os.path.join(dir, "skewtail.stderr"), "a"))


def start_tail(dir):
    return subprocess.Popen(["tail", "-n", "0", "-F", os.path.join(dir, "access.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(dir, *args):
    return subprocess.Popen([LOAD, *map(str, args), os.path.join(dir, "access.log")],
                            stderr=subprocess.DEVNULL)


def measure_follow(reader_kind, rate, seconds, warmup):
    """CPU % of one core and peak RSS of a reader following a log written at `rate`."""
    with tempfile.TemporaryDirectory() as dir:
        open(os.path.join(dir, "access.log"), "w").close()
        reader = start_skewtail(dir, config(dir)) if reader_kind == "skewtail" else start_tail(dir)
        time.sleep(1)
        writer = load(dir, "--rate", rate, "--seconds", seconds)
        written_from = time.monotonic()
        time.sleep(warmup)
        ticks0, t0 = cpu_ticks(reader.pid), time.monotonic()
        path = os.path.realpath(os.path.join(dir, "access.log"))
        max_lag = 0
        while writer.poll() is None:
            time.sleep(0.5)
            pos = offset_in(reader.pid, path)
            if pos is not None:
                max_lag = max(max_lag, os.path.getsize(path) - pos)
        ticks1, t1 = cpu_ticks(reader.pid), time.monotonic()
        # Caught up at the end?
        deadline = time.monotonic() + 10
        caught_up_s = None
        while time.monotonic() < deadline:
            pos = offset_in(reader.pid, path)
            if pos is not None and pos >= os.path.getsize(path):
                caught_up_s = time.monotonic() - t1
                break
            time.sleep(0.05)
        write_rate = count_lines(path) / (t1 - written_from)
        hwm = status_kb(reader.pid, "VmHWM")
        stop(reader)
        cpu = 100.0 * (ticks1 - ticks0) / TICK / (t1 - t0)
        return cpu, hwm / 1024, max_lag, caught_up_s, write_rate


def count_lines(path):
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def in_turns(rate, seconds, warmup, turns):
    rows = []
    for turn in range(turns):
        for kind in ("skewtail", "tail -F"):
            cpu, rss, lag, caught, written = measure_follow(kind, rate, seconds, warmup)
            rows.append((kind, cpu, rss, lag, caught))
            print(f"turn {turn + 1} {kind:8}: {written:,.0f} lines/s written; {cpu:6.2f}% of a core, peak RSS {rss:6.1f} MB, "
                  f"max lag {lag / 1024:8.1f} KiB, caught up {caught if caught is None else round(caught, 2)} s after the writer stopped",
                  flush=True)
    for kind in ("skewtail", "tail -F"):
        cpus = [r[1] for r in rows if r[0] == kind]
        print(f"{kind}: mean {sum(cpus) / len(cpus):.2f}% of a core")
    s = [r[1] for r in rows if r[0] == "skewtail"]
    t = [r[1] for r in rows if r[0] == "tail -F"]
    print(f"ratio skewtail/tail -F CPU: {sum(s) / max(sum(t), 1e-9):.1f}")


class Receiver(http.server.BaseHTTPRequestHandler):
    arrivals = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.arrivals.append((time.time() * 1000, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def latency():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    with tempfile.TemporaryDirectory() as dir:
        open(os.path.join(dir, "access.log"), "w").close()
        cfg = config(dir, f'[[sink]]\nname = "hook"\ntype = "webhook"\nurl = "{url}"\n\n')
        reader = start_skewtail(dir, cfg, stdout=subprocess.PIPE)
        arrivals = []

        def read_stdout():
            for line in reader.stdout:
                arrivals.append((time.time() * 1000, json.loads(line)))

        threading.Thread(target=read_stdout, daemon=True).start()
        time.sleep(1)
        marks = os.path.join(dir, "marks")
        writer = load(dir, "--rate", 500, "--seconds", 480, "--skew-from", 330, "--skew-to", 420,
                      "--marks", marks)
        writer.wait()
        time.sleep(3)
        stop(reader)
        closed_at = {int(a): int(b) for a, b in (l.split() for l in open(marks))}

        def end_ms(iso):
            import datetime
            return int(datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)

        windows = sorted(at - closed_at[end_ms(o["end"])] for at, o in arrivals
                         if o["type"] == "window" and end_ms(o["end"]) in closed_at)
        alerts = [(o["state"], o["kind"], at - closed_at[end_ms(o["at"])]) for at, o in arrivals
                  if o["type"] == "alert" and end_ms(o["at"]) in closed_at]
        hooks = []
        for at, body in Receiver.arrivals:
            for alert in json.loads(body).get("alerts", []):
                when = alert.get("at")
                if when and end_ms(when) in closed_at:
                    hooks.append((alert.get("state"), alert.get("kind"), at - closed_at[end_ms(when)]))
        print(f"windows on stdout: {len(windows)}; ms from the closing line's write: "
              f"p50 {windows[len(windows) // 2]:.0f}, p99 {windows[int(len(windows) * 0.99)]:.0f}, max {windows[-1]:.0f}")
        for state, kind, ms in alerts:
            print(f"alert on stdout: {state} {kind}: {ms:.0f} ms after its window's closing line was written")
        for state, kind, ms in hooks:
            print(f"alert at the webhook: {state} {kind}: {ms:.0f} ms")
    server.shutdown()


def churn():
    with tempfile.TemporaryDirectory() as dir:
        open(os.path.join(dir, "access.log"), "w").close()
        cfg = config(dir, "[detector]\nforget_after_s = 300\n\n")
        reader = start_skewtail(dir, cfg)
        time.sleep(1)
        minutes = 15
        writer = load(dir, "--rate", 5000, "--seconds", minutes * 60, "--backends", 1000, "--churn")
        started = time.monotonic()
        while writer.poll() is None:
            time.sleep(30)
            print(f"{(time.monotonic() - started) / 60:5.1f} min: RSS {status_kb(reader.pid, 'VmRSS') / 1024:6.1f} MB, "
                  f"peak {status_kb(reader.pid, 'VmHWM') / 1024:6.1f} MB", flush=True)
        stop(reader)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    if what == "cpu":
        in_turns(rate=5000, seconds=100, warmup=20, turns=2)
    elif what == "throughput":
        in_turns(rate=300_000, seconds=40, warmup=10, turns=2)
    elif what == "latency":
        latency()
    elif what == "churn":
        churn()
    else:
        sys.exit(__doc__)
