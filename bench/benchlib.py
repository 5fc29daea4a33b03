"""Shared helpers of somirror's benchmarks (bench/*.py, run by `make bench`).

Every benchmark takes --builddir (the built programs) and --srcdir (this tree), starts its own
somirrord through tests/integration/harness.py, prints a table (figure, value, baseline, ratio)
and appends it to bench/RESULTS.md with the date, the machine and the exact command. Nothing is
left running: the harness kills the daemon's process group on exit.

Process figures come from /proc: CPU seconds (utime+stime of /proc/<pid>/stat), peak and current
resident memory (VmHWM, VmRSS of /proc/<pid>/status)."""

import argparse
import datetime
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(description, extra=None):
    """Common options; extra(parser) adds the benchmark's own. Sets up the harness import."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--builddir", default=os.environ.get("SOMIRROR_BUILDDIR") or os.getcwd())
    parser.add_argument("--srcdir", default=os.environ.get("SOMIRROR_SRCDIR") or os.path.dirname(HERE))
    parser.add_argument("--results", default=None, help="markdown file to append to "
                        "(default SRCDIR/bench/RESULTS.md; '-' for none)")
    parser.add_argument("--workdir", default=None, help="where the temporary files go (default $TMPDIR)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    args.builddir = os.path.abspath(args.builddir)
    args.srcdir = os.path.abspath(args.srcdir)
    os.environ["SOMIRROR_BUILDDIR"] = args.builddir
    os.environ["SOMIRROR_SRCDIR"] = args.srcdir
    sys.path.insert(0, os.path.join(args.srcdir, "tests", "integration"))
    if args.results is None:
        args.results = os.path.join(args.srcdir, "bench", "RESULTS.md")
    args.command = " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)
    return args


def harness():
    import harness as h  # noqa: E402  (path set by parse_args)
    return h


def program(args, name):
    path = os.path.join(args.builddir, name)
    if not os.access(path, os.X_OK):
        sys.exit("%s is not built in %s (make -C %s all %s)" % (name, args.builddir, args.builddir, name))
    return path


# ---------------------------------------------------------------- the machine and /proc

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine():
    return "%d CPUs (nproc), %s, %s %s" % (os.cpu_count(), cpu_model(), platform.system(), platform.release())


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def stat_fields(pid):
    """The fields of /proc/<pid>/stat after the command name (comm first), or None when gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return [stat[stat.index("(") + 1:stat.rindex(")")]] + stat[stat.rindex(")") + 2:].split()


def cpu_seconds(pid):
    """utime+stime of a process, in seconds (0 when it is gone)."""
    fields = stat_fields(pid)
    return (int(fields[12]) + int(fields[13])) / CLK_TCK if fields else 0.0


def command_cpu_seconds(comm):
    """CPU seconds of every process named comm: utime+stime of those alive, plus cutime+cstime
    (their children they reaped, such as a server's ended sessions). Only differences between
    two readings mean anything."""
    total = 0
    for pid in os.listdir("/proc"):
        fields = stat_fields(pid) if pid.isdigit() else None
        if fields and fields[0] == comm:
            total += sum(int(x) for x in fields[12:16])
    return total / CLK_TCK


def status_kib(pid, key):
    """A kB figure of /proc/<pid>/status (VmHWM, VmRSS, ...), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def self_cpu():
    """CPU seconds of this process (all threads) plus its waited-for children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def median(values):
    """The median, or NaN when any value is NaN (statistics.median would give an arbitrary one)."""
    values = list(values)
    return float("nan") if any(v != v for v in values) else statistics.median(values)


def per_second(count, seconds):
    """count / seconds, or NaN where a run was too short for its clock (CPU time comes in ticks
    of 10 ms, so a small load can show none)."""
    return count / seconds if seconds > 0 else float("nan")


class Clock:
    """Wall and CPU time of a stretch: this process (+children) and the given pids."""

    def __init__(self, pids=()):
        self.pids = list(pids)

    def __enter__(self):
        self.cpu0 = {p: cpu_seconds(p) for p in self.pids}
        self.self0 = self_cpu()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.self_cpu = self_cpu() - self.self0
        self.cpu = {p: cpu_seconds(p) - self.cpu0[p] for p in self.pids}
        return False

    @property
    def server_cpu(self):
        return sum(self.cpu.values())


def client_note(clock, label="client"):
    """A sentence about whether the client limited the run."""
    share = clock.self_cpu / clock.wall if clock.wall else 0
    cores = os.cpu_count() or 1
    limits = share > 0.85 * cores / 2 if cores <= 2 else share > 0.85
    return ("%s CPU %.2f s over %.2f s wall (%.0f%% of one core)%s" %
            (label, clock.self_cpu, clock.wall, 100 * share,
             ": the client may be limiting" if limits else ": not the bottleneck"))


# ---------------------------------------------------------------- results

def fmt(value, digits=None):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return "{:,}".format(value)
    if digits is None:
        digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 100 else 2 if abs(value) >= 1 else 3
    return "{:,.{}f}".format(value, digits)


def row(figure, value, baseline=None, ratio=None, unit=""):
    """One table row; ratio is computed as value/baseline when not given and both are numbers."""
    if ratio is None and isinstance(value, (int, float)) and isinstance(baseline, (int, float)) and baseline:
        ratio = value / baseline
    return (figure + (" (%s)" % unit if unit else ""), fmt(value), fmt(baseline),
            fmt(ratio, 2) if isinstance(ratio, float) else fmt(ratio))


def table_text(rows):
    head = ("figure", "value", "baseline", "ratio")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 3) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def report(args, title, rows, notes=()):
    """Prints the table and appends it to the results file."""
    text = table_text(rows)
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    block = ["### %s" % title, "",
             "- date: %s" % stamp,
             "- machine: %s; load average %s (other work shares it)" % (machine(), loadavg()),
             "- command: `%s`" % args.command, ""]
    block.append(text)
    if notes:
        block.append("")
        block.extend("- " + n for n in notes)
    block.append("")
    out = "\n".join(block)
    print(out, flush=True)
    if args.results and args.results != "-":
        new = not os.path.exists(args.results)
        with open(args.results, "a") as f:
            if new:
                f.write("# somirror benchmark results\n\nAppended by `make bench` (bench/*.py); "
                        "see bench/README.md for what each figure means.\n\n")
            f.write(out + "\n")


def run(argv, **kw):
    """subprocess.run with output captured; raises with the output on failure."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace", **kw)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d\n%s\n%s" % (" ".join(argv), proc.returncode,
                                                     proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def bench_config(h, directory, keys, **overrides):
    """A somirrord config for benchmarks: info logging (debug costs), long timeouts."""
    base = {"log.level": "info", "limits.request_timeout": 600, "shutdown_timeout": 10}
    base.update(overrides)
    return h.write_config(directory, keys, **base)


def served_worker(daemon):
    """The pid of the worker that served the most calls (show workers json), or None."""
    try:
        workers = daemon.ctl_json("show workers")["workers"]
    except Exception:
        return None
    if not workers:
        return None
    return max(workers, key=lambda w: w.get("calls") or 0)["pid"]


def shared_memory_bytes(daemon):
    """The registry size from `show info json` when it says, else from /proc/<master>/maps."""
    try:
        info = daemon.ctl_json("show info")
        for key in ("shm_bytes", "shared_memory_bytes", "registry_bytes", "shm_size"):
            if key in info:
                return int(info[key]), "show info json (%s)" % key
    except Exception:
        pass
    best = 0
    try:
        with open("/proc/%d/maps" % daemon.pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[1].startswith("rw-s"):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    best = max(best, hi - lo)
    except OSError:
        pass
    return best, "largest shared mapping of the master (/proc/PID/maps)"


# ---------------------------------------------------------------- profiles

def perf_top(path, n=15):
    """The top n functions by self time of a perf.data file, as text lines."""
    proc = subprocess.run(["perf", "report", "-i", path, "--stdio", "--no-children", "-g", "none",
                           "--percent-limit", "0.5", "--sort", "symbol,dso"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
    lines = [l.rstrip() for l in proc.stdout.splitlines() if l.strip() and not l.startswith("#")
             and "[.] 0x" not in l]   # unresolved addresses (stripped libraries): see "by object"
    dsos = subprocess.run(["perf", "report", "-i", path, "--stdio", "--no-children", "-g", "none",
                           "--sort", "dso"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, errors="replace").stdout
    shares = [" ".join(l.split()) for l in dsos.splitlines() if l.strip() and not l.startswith("#")][:6]
    return lines[:n] + ["by object: " + "; ".join(shares)]


def perf_start(pids, path):
    """perf record -g of the given pids into path; returns the process (stop with perf_stop)."""
    proc = subprocess.Popen(["perf", "record", "-g", "-o", path, "-p", ",".join(str(p) for p in pids)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def perf_stop(proc, path):
    proc.send_signal(2)
    proc.wait(60)
    return perf_top(path)


def profile_note(what, lines):
    return ("perf record -g of %s, top functions by self time:\n\n  ```\n" % what +
            "\n".join("  " + l for l in lines) + "\n  ```")
