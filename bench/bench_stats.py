#!/usr/bin/env python3
"""Figures for bench/run.sh (standard library only).

  bench_stats.py record OUT.jsonl TARGET ROUND H2LOAD_STDOUT H2LOAD_LOG
                 [--cpu CLK_TCK SNAP_BEFORE SNAP_AFTER]
                 [METRICS_BEFORE METRICS_AFTER METHOD]
      Appends one JSON line for a measured h2load run: req/s (h2load's own
      figure), p50/p99 latency computed from --log-file (3rd column: µs from
      request start to end of response), h2load's failed/errored/timeout and
      non-2xx counts, and -- when the metrics snapshots are given -- the
      delta of fxb_rpc_total{method=METHOD,code=...} between them: code "OK"
      (or "0") counts as OK, every other code as a gRPC error.
      With --cpu, the CPU used during the run, from two snapshots written by
      run.sh's cpu_snap (wall clock, /proc/stat "cpu" line, the server's
      /proc/PID/stat, bash `times`): the server's CPU per call (utime+stime
      over the requests h2load completed), the cores the server, h2load and
      everything else used, and the steal.

  bench_stats.py speed
      Prints "speed NS": the machine's speed right now, as the CPU time in ns
      of one iteration of a fixed Python loop, pinned to each CPU in turn
      (best of 3 short tries each; the slowest CPU counts). The host
      throttles this VM by up to 2x: this tells the states apart.

  bench_stats.py quiet OUT.jsonl ROUND QUIET_MAX [SPEED_TOL]
      Exit status 0 when, in every run of ROUND, other processes used at most
      QUIET_MAX cores (or no CPU figures were recorded) and the speed probes
      of the round's runs differed by at most SPEED_TOL (a fraction), 4
      otherwise.

  bench_stats.py report OUT.jsonl CEILING_TARGET GOAL_TARGET GOAL_RATIO
                 [QUIET_MAX [ROUNDS_WANTED [SPEED_TOL]]]
      Prints the table (medians over the quiet rounds, or over all of them
      when fewer than 3 were quiet), every round, the paired ratios and the
      goal line. The goal is judged on the median of the per-round ratios
      GOAL_TARGET req/s / CEILING_TARGET req/s. Exit status 0 when the goal
      is met and no run had errors, 3 otherwise.

  bench_stats.py freeport [N]
      Prints N free TCP ports on 127.0.0.1 (default 1).
"""
import json
import math
import os
import re
import socket
import statistics
import sys
import time

RE_FINISHED = re.compile(r"^finished in .*?, ([0-9.]+) req/s", re.M)
RE_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
RE_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
# fxb_rpc_total{method="/fxb.v1.SystemService/GetInfo",code="OK"} 123
RE_RPC_TOTAL = re.compile(r'^fxb_rpc_total\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)
RE_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# bash `times`: "0m1.234s 0m0.567s" (user, system)
RE_TIMES = re.compile(r"^(\d+)m([0-9.,]+)s\s+(\d+)m([0-9.,]+)s$")


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def parse_h2load(stdout_path, log_path):
    text = open(stdout_path, encoding="utf-8", errors="replace").read()
    m = RE_FINISHED.search(text)
    r = RE_REQUESTS.search(text)
    s = RE_STATUS.search(text)
    if not (m and r and s):
        raise SystemExit("bench_stats: cannot parse h2load output %s" % stdout_path)
    total, _started, done, succeeded, failed, errored, timeout = map(int, r.groups())
    c2, c3, c4, c5 = map(int, s.groups())
    lat_us = []
    bad_rows = 0
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) < 3:
                continue
            if cols[1].strip() != "200":
                bad_rows += 1
                continue
            lat_us.append(float(cols[2]))
    lat_us.sort()
    return {
        "rps": float(m.group(1)),
        "requests": total,
        "done": done,
        "succeeded": succeeded,
        "h2_failed": failed,
        "h2_errored": errored,
        "h2_timeout": timeout,
        "non2xx": c3 + c4 + c5,
        "ok_2xx": c2,
        "log_rows": len(lat_us) + bad_rows,
        "log_bad": bad_rows,
        "p50_ms": percentile(lat_us, 50) / 1000.0,
        "p99_ms": percentile(lat_us, 99) / 1000.0,
        "mean_ms": (sum(lat_us) / len(lat_us) / 1000.0) if lat_us else float("nan"),
    }


def rpc_counts(path, method):
    """{code: count} of fxb_rpc_total for one method. The method label may be
    written with or without the leading '/'."""
    want = method.lstrip("/")
    counts = {}
    text = open(path, encoding="utf-8", errors="replace").read()
    for labels, value in RE_RPC_TOTAL.findall(text):
        lab = dict(RE_LABEL.findall(labels))
        if lab.get("method", "").lstrip("/") != want:
            continue
        code = lab.get("code", "?")
        counts[code] = counts.get(code, 0) + float(value)
    return counts


def parse_snap(path):
    """A cpu_snap file: {"time": s, "cpu": [jiffies...], "srv": (utime, stime)
    in jiffies or None, "kids": children user+sys seconds}."""
    snap = {"srv": None}
    times = []
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("time "):
            snap["time"] = float(line[5:].strip().replace(",", "."))
        elif line.startswith("cpu "):
            snap["cpu"] = [int(x) for x in line.split()[1:]]
        elif line.startswith("speed "):
            snap["speed"] = float(line.split()[1])
        elif line.startswith("srv "):
            rest = line[4:]
            if ")" in rest:
                # fields after "(comm)": state is field 3, utime 14, stime 15
                f = rest[rest.rindex(")") + 1:].split()
                snap["srv"] = (int(f[11]), int(f[12]))
        else:
            m = RE_TIMES.match(line.strip())
            if m:
                times.append(60 * (int(m.group(1)) + int(m.group(3))) +
                             float(m.group(2).replace(",", ".")) +
                             float(m.group(4).replace(",", ".")))
    if "time" not in snap or "cpu" not in snap or len(times) != 2:
        raise SystemExit("bench_stats: cannot parse CPU snapshot %s" % path)
    snap["kids"] = times[1]  # `times`: line 1 the shell, line 2 its children
    return snap


def cpu_figures(clk_tck, before, after, calls):
    """CPU used between two snapshots: the server (all its threads), h2load
    (the shell's reaped children) and everything else (the machine's busy
    time minus those two), in cores, plus the server's µs per call."""
    b, a = parse_snap(before), parse_snap(after)
    wall = a["time"] - b["time"]
    if wall <= 0:
        raise SystemExit("bench_stats: CPU snapshots %s, %s: no time between them" % (before, after))
    d = [y - x for x, y in zip(b["cpu"], a["cpu"])]
    d += [0] * (8 - len(d))
    # user nice system idle iowait irq softirq steal (guest is inside user)
    busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / clk_tck
    steal = d[7] / clk_tck
    h2 = a["kids"] - b["kids"]
    fig = {"wall_s": wall, "h2load_cores": h2 / wall, "steal_cores": steal / wall}
    if "speed" in b and "speed" in a:
        fig["speed_ns"] = [b["speed"], a["speed"]]
    if b["srv"] and a["srv"]:
        srv = (a["srv"][0] + a["srv"][1] - b["srv"][0] - b["srv"][1]) / clk_tck
        fig["srv_cores"] = srv / wall
        if calls:
            fig["srv_us_per_call"] = srv * 1e6 / calls
        fig["other_cores"] = max(0.0, busy - srv - h2) / wall
    else:
        fig["other_cores"] = max(0.0, busy - h2) / wall  # server gone: all of it
    return fig


def cmd_record(argv):
    cpu = None
    if "--cpu" in argv:
        i = argv.index("--cpu")
        if len(argv) < i + 4:
            raise SystemExit(__doc__)
        cpu = argv[i + 1:i + 4]
        argv = argv[:i] + argv[i + 4:]
    if len(argv) not in (5, 8):
        raise SystemExit(__doc__)
    out, target, rnd, h2out, h2log = argv[:5]
    rec = {"target": target, "round": int(rnd)}
    rec.update(parse_h2load(h2out, h2log))
    if cpu:
        rec.update(cpu_figures(int(cpu[0]), cpu[1], cpu[2], rec["done"]))
    if len(argv) == 8:
        before, after, method = argv[5:]
        b, a = rpc_counts(before, method), rpc_counts(after, method)
        delta = {c: a.get(c, 0) - b.get(c, 0) for c in set(a) | set(b)}
        delta = {c: int(v) for c, v in delta.items() if v}
        ok = sum(v for c, v in delta.items() if c in ("OK", "0"))
        rec["metrics"] = delta
        rec["grpc_ok"] = ok
        rec["grpc_errors"] = sum(delta.values()) - ok
        # Calls h2load saw answered that the server never counted (e.g. the
        # metrics line is missing or the method label differs).
        rec["grpc_uncounted"] = max(0, rec["ok_2xx"] - sum(delta.values()))
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    cpu_txt = ""
    if "srv_us_per_call" in rec:
        cpu_txt = "  cpu %.2f us/call (srv %.2f, h2load %.2f, others %.2f cores)" % (
            rec["srv_us_per_call"], rec["srv_cores"], rec["h2load_cores"], rec["other_cores"])
    print("  %-10s round %s: %8.0f req/s  p50 %.3f ms  p99 %.3f ms  errors %d%s%s" % (
        target, rnd, rec["rps"], rec["p50_ms"], rec["p99_ms"], run_errors(rec), cpu_txt,
        "" if "metrics" not in rec else "  codes %s" % json.dumps(rec["metrics"], sort_keys=True)))


def run_errors(rec):
    e = rec["h2_failed"] + rec["h2_errored"] + rec["h2_timeout"] + rec["non2xx"]
    e += rec.get("grpc_errors", 0)
    # A request h2load did not complete is an error too.
    e += max(0, rec["requests"] - rec["done"])
    return e


def load(path):
    """{round: {target: record}} in round order, and the targets in the order
    first seen."""
    by_round, order = {}, []
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        if r["target"] not in order:
            order.append(r["target"])
        by_round.setdefault(r["round"], {})[r["target"]] = r
    return by_round, order


def round_others(rr):
    """The most cores other processes used during one run of the round."""
    return max([r.get("other_cores", 0.0) for r in rr.values()] or [0.0])


def round_speed_spread(rr):
    """max/min - 1 of the speed probes of the round's runs (0 without any)."""
    v = [x for r in rr.values() for x in r.get("speed_ns", [])]
    return max(v) / min(v) - 1 if v and min(v) > 0 else 0.0


def is_quiet(rr, quiet_max, speed_tol):
    return round_others(rr) <= quiet_max and round_speed_spread(rr) <= speed_tol


def cmd_quiet(argv):
    if len(argv) not in (3, 4):
        raise SystemExit(__doc__)
    by_round, _ = load(argv[0])
    rr = by_round.get(int(argv[1]), {})
    tol = float(argv[3]) if len(argv) > 3 else float("inf")
    return 0 if is_quiet(rr, float(argv[2]), tol) else 4


def cmd_speed(argv):
    if argv:
        raise SystemExit(__doc__)
    # Pinned to each CPU in turn: the host may throttle one vCPU and not the
    # other. The slowest CPU's best of 3 is the figure.
    n, slowest = 50000, 0
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None]
    for cpu in cpus:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        best = None
        for _ in range(3):
            t0 = time.process_time_ns()
            x = 0
            for i in range(n):
                x += i * i
            d = time.process_time_ns() - t0
            best = d if best is None or d < best else best
        slowest = max(slowest, best)
    print("speed %.2f" % (slowest / n))


def pct(x):
    return "%.1f%%" % (100.0 * x)


def cmd_report(argv):
    if len(argv) not in (4, 5, 6, 7):
        raise SystemExit(__doc__)
    path, ceiling, goal_target, goal_ratio = argv[0], argv[1], argv[2], float(argv[3])
    quiet_max = float(argv[4]) if len(argv) > 4 else float("inf")
    want = int(argv[5]) if len(argv) > 5 else 0
    speed_tol = float(argv[6]) if len(argv) > 6 else float("inf")
    by_round, order = load(path)
    rounds = sorted(by_round)
    quiet = [r for r in rounds if is_quiet(by_round[r], quiet_max, speed_tol)]
    probes = [x for rr in by_round.values() for r in rr.values() for x in r.get("speed_ns", [])]
    fastest = min(probes) if probes else None
    basis = quiet if len(quiet) >= 3 or len(quiet) == len(rounds) else rounds
    has_cpu = all("srv_us_per_call" in x for rr in by_round.values() for x in rr.values())

    def paired(t, key, invert=False):
        """Per-round ratios t/ceiling of key over the basis rounds (ceiling/t
        with invert: for CPU per call, lower is better)."""
        out = []
        for r in basis:
            rr = by_round[r]
            if t in rr and ceiling in rr and key in rr[t] and key in rr[ceiling]:
                a, b = rr[t][key], rr[ceiling][key]
                if invert:
                    a, b = b, a
                if b:
                    out.append(a / b)
        return out

    summary = {}
    for t in order:
        rs = [by_round[r][t] for r in basis if t in by_round[r]]
        every = [rr[t] for rr in by_round.values() if t in rr]
        s = summary[t] = {
            "rounds": len(rs),
            "rps": statistics.median(r["rps"] for r in rs),
            "rps_min": min(r["rps"] for r in rs),
            "rps_max": max(r["rps"] for r in rs),
            "p50": statistics.median(r["p50_ms"] for r in rs),
            "p99": statistics.median(r["p99_ms"] for r in rs),
            # errors count in every round, noisy or not
            "errors": sum(run_errors(r) for r in every),
            "uncounted": sum(r.get("grpc_uncounted", 0) for r in every),
            "ratio": paired(t, "rps"),
            "cpu_ratio": paired(t, "srv_us_per_call", invert=True),
        }
        if has_cpu:
            s["us"] = statistics.median(r["srv_us_per_call"] for r in rs)
            s["cores"] = statistics.median(r["srv_cores"] for r in rs)

    if basis is quiet and len(quiet) == len(rounds):
        print("medians over %d round(s), all quiet" % len(basis))
    elif basis is quiet:
        print("medians over the %d quiet rounds (%d noisy left out)" % (
            len(basis), len(rounds) - len(basis)))
    else:
        print("medians over all %d rounds: fewer than 3 were quiet" % len(basis))
    hdr = "%-11s %9s %17s %7s %7s %6s %8s %9s %9s %9s" % (
        "target", "req/s", "(min..max)", "p50 ms", "p99 ms", "errors", "vs ceil",
        "cpu us/c", "srv cores", "cpu vs c")
    print(hdr)
    print("-" * len(hdr))
    for t in order:
        s = summary[t]
        ratio = pct(statistics.median(s["ratio"])) if s["ratio"] else "n/a"
        cpu_ratio = pct(statistics.median(s["cpu_ratio"])) if s["cpu_ratio"] else "n/a"
        print("%-11s %9.0f %17s %7.3f %7.3f %6d %8s %9s %9s %9s" % (
            t, s["rps"], "%.0f..%.0f" % (s["rps_min"], s["rps_max"]), s["p50"], s["p99"],
            s["errors"], ratio,
            "%.2f" % s["us"] if "us" in s else "-",
            "%.2f" % s["cores"] if "cores" in s else "-", cpu_ratio))
    print("(req/s, p50, p99, cpu us/c (server CPU per call), srv cores: medians; errors ="
          " h2load failed/errored/timeout/non-2xx, plus non-OK grpc codes from fxb_rpc_total"
          " for fxb targets, summed over all rounds; vs ceil: median of the per-round ratios"
          " req/s / %s req/s; cpu vs c: median of the per-round ratios %s cpu/call / cpu/call,"
          " i.e. throughput at equal CPU)" % (ceiling, ceiling))
    for t in order:
        if summary[t]["uncounted"]:
            print("WARNING: %s: %d answered requests missing from fxb_rpc_total "
                  "(metrics line absent or method label differs?)" % (t, summary[t]["uncounted"]))

    print()
    print("every round (req/s, server us CPU/call; others = cores used by other processes"
          "%s; speed = the CPU probes of the round relative to the fastest of the run%s):" % (
              "" if quiet_max == float("inf") else ", quiet <= %.2f" % quiet_max,
              "" if speed_tol == float("inf") else ", quiet when within %.0f%%" % (100 * speed_tol)))
    for r in rounds:
        rr = by_round[r]
        cells = []
        for t in order:
            if t in rr:
                x = rr[t]
                cells.append("%s %.1fk%s" % (t, x["rps"] / 1e3, " %.2fus" % x["srv_us_per_call"]
                                            if "srv_us_per_call" in x else ""))
        pair = ""
        if goal_target in rr and ceiling in rr:
            g, c = rr[goal_target], rr[ceiling]
            pair = "; %s/%s %s" % (goal_target, ceiling, pct(g["rps"] / c["rps"]))
            if "srv_us_per_call" in g and "srv_us_per_call" in c and g["srv_us_per_call"]:
                pair += ", at equal cpu %s" % pct(c["srv_us_per_call"] / g["srv_us_per_call"])
        steal = max(x.get("steal_cores", 0.0) for x in rr.values())
        sp = [x for y in rr.values() for x in y.get("speed_ns", [])]
        speed = "; speed %.2f..%.2f" % (fastest / max(sp), fastest / min(sp)) if sp else ""
        print("  round %d: %s%s; others up to %.2f cores%s%s%s" % (
            r, ", ".join(cells), pair, round_others(rr),
            " (steal %.2f)" % steal if steal >= 0.01 else "", speed,
            "" if r in quiet else "  NOISY" + ("" if r in basis else ", left out")))
    h2 = [x["h2load_cores"] for rr in by_round.values() for x in rr.values() if "h2load_cores" in x]
    if h2:
        print("h2load: %.2f cores (median over all runs)" % statistics.median(h2))

    print()
    bad = any(s["errors"] for s in summary.values())
    status = 0 if not bad else 3
    g = summary.get(goal_target)
    if g and g["ratio"]:
        ratio = statistics.median(g["ratio"])
        print("%s / %s, req/s:  %s  median of the %d per-round ratios (range %s..%s;"
              " ratio of the medians %s)" % (
                  goal_target, ceiling, pct(ratio), len(g["ratio"]), pct(min(g["ratio"])),
                  pct(max(g["ratio"])), pct(g["rps"] / summary[ceiling]["rps"])))
        if g["cpu_ratio"]:
            print("%s / %s, at equal CPU (%s cpu/call / %s cpu/call):  %s  median of the"
                  " per-round ratios (range %s..%s)" % (
                      goal_target, ceiling, ceiling, goal_target,
                      pct(statistics.median(g["cpu_ratio"])), pct(min(g["cpu_ratio"])),
                      pct(max(g["cpu_ratio"]))))
            print("server CPU per call: %s %.2f us, %s %.2f us (medians; %+.2f us)" % (
                ceiling, summary[ceiling]["us"], goal_target, g["us"],
                g["us"] - summary[ceiling]["us"]))
        if want and len(quiet) < want:
            print("WARNING: only %d of the %d quiet rounds wanted: the machine was busy;"
                  " the figures are noisy" % (len(quiet), want))
        met = ratio >= goal_ratio and not bad
        print("target: %s >= %.0f%% of %s, zero errors: %s (%s, median paired req/s ratio%s)" % (
            goal_target, 100 * goal_ratio, ceiling, "MET" if met else "NOT MET", pct(ratio),
            "; errors seen" if bad else ""))
        if not met:
            status = 3
    else:
        print("target: %s >= %.0f%% of %s: not measured" % (goal_target, 100 * goal_ratio, ceiling))
    if bad:
        print("ERRORS were seen: see the per-round lines above")
    return status


def cmd_freeport(argv):
    n = int(argv[0]) if argv else 1
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "record":
        cmd_record(argv)
    elif cmd == "report":
        sys.exit(cmd_report(argv))
    elif cmd == "quiet":
        sys.exit(cmd_quiet(argv))
    elif cmd == "speed":
        cmd_speed(argv)
    elif cmd == "freeport":
        cmd_freeport(argv)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
