#!/usr/bin/env python3
"""Figures for bench/run.sh (standard library only).

  bench_stats.py record OUT.jsonl TARGET ROUND H2LOAD_STDOUT H2LOAD_LOG
                 [METRICS_BEFORE METRICS_AFTER METHOD]
      Appends one JSON line for a measured h2load run: req/s (h2load's own
      figure), p50/p99 latency computed from --log-file (3rd column: µs from
      request start to end of response), h2load's failed/errored/timeout and
      non-2xx counts, and -- when the metrics snapshots are given -- the
      delta of fxb_rpc_total{method=METHOD,code=...} between them: code "OK"
      (or "0") counts as OK, every other code as a gRPC error.

  bench_stats.py report OUT.jsonl CEILING_TARGET GOAL_TARGET GOAL_RATIO
      Prints the table (median over rounds) and the goal line. Exit status 0
      when the goal is met and no run had errors, 3 otherwise.

  bench_stats.py freeport [N]
      Prints N free TCP ports on 127.0.0.1 (default 1).
"""
import json
import math
import re
import socket
import statistics
import sys

RE_FINISHED = re.compile(r"^finished in .*?, ([0-9.]+) req/s", re.M)
RE_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
RE_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
# fxb_rpc_total{method="/fxb.v1.SystemService/GetInfo",code="OK"} 123
RE_RPC_TOTAL = re.compile(r'^fxb_rpc_total\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)
RE_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


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


def cmd_record(argv):
    if len(argv) not in (5, 8):
        raise SystemExit(__doc__)
    out, target, rnd, h2out, h2log = argv[:5]
    rec = {"target": target, "round": int(rnd)}
    rec.update(parse_h2load(h2out, h2log))
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
    print("  %-14s round %s: %10.0f req/s  p50 %.3f ms  p99 %.3f ms  errors %d%s" % (
        target, rnd, rec["rps"], rec["p50_ms"], rec["p99_ms"], run_errors(rec),
        "" if "metrics" not in rec else "  codes %s" % json.dumps(rec["metrics"], sort_keys=True)))


def run_errors(rec):
    e = rec["h2_failed"] + rec["h2_errored"] + rec["h2_timeout"] + rec["non2xx"]
    e += rec.get("grpc_errors", 0)
    # A request h2load did not complete is an error too.
    e += max(0, rec["requests"] - rec["done"])
    return e


def cmd_report(argv):
    if len(argv) != 4:
        raise SystemExit(__doc__)
    path, ceiling, goal_target, goal_ratio = argv[0], argv[1], argv[2], float(argv[3])
    recs = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    order = []
    by = {}
    for r in recs:
        if r["target"] not in by:
            order.append(r["target"])
            by[r["target"]] = []
        by[r["target"]].append(r)

    summary = {}
    for t in order:
        rs = by[t]
        summary[t] = {
            "rounds": len(rs),
            "rps": statistics.median(r["rps"] for r in rs),
            "rps_min": min(r["rps"] for r in rs),
            "rps_max": max(r["rps"] for r in rs),
            "p50": statistics.median(r["p50_ms"] for r in rs),
            "p99": statistics.median(r["p99_ms"] for r in rs),
            "errors": sum(run_errors(r) for r in rs),
            "uncounted": sum(r.get("grpc_uncounted", 0) for r in rs),
            "metrics": any("metrics" in r for r in rs),
        }
    ceil_rps = summary.get(ceiling, {}).get("rps")

    hdr = "%-16s %11s %17s %9s %9s %8s %9s" % (
        "target", "req/s", "(min..max)", "p50 ms", "p99 ms", "errors", "vs ceil")
    print(hdr)
    print("-" * len(hdr))
    for t in order:
        s = summary[t]
        ratio = "%8.1f%%" % (100.0 * s["rps"] / ceil_rps) if ceil_rps else "      n/a"
        print("%-16s %11.0f %17s %9.3f %9.3f %8d %9s" % (
            t, s["rps"], "%.0f..%.0f" % (s["rps_min"], s["rps_max"]), s["p50"], s["p99"],
            s["errors"], ratio))
    print("(median of %d round(s); errors = h2load failed/errored/timeout/non-2xx, plus"
          " non-OK grpc codes from fxb_rpc_total for fxb targets, summed over rounds)"
          % max(s["rounds"] for s in summary.values()))
    for t in order:
        if summary[t]["uncounted"]:
            print("WARNING: %s: %d answered requests missing from fxb_rpc_total "
                  "(metrics line absent or method label differs?)" % (t, summary[t]["uncounted"]))

    bad = any(s["errors"] for s in summary.values())
    status = 0 if not bad else 3
    if goal_target in summary and ceil_rps:
        ratio = summary[goal_target]["rps"] / ceil_rps
        met = ratio >= goal_ratio
        print("target: %s >= %.0f%% of %s: %s (%.1f%%)" % (
            goal_target, 100 * goal_ratio, ceiling, "MET" if met else "NOT MET", 100 * ratio))
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
    elif cmd == "freeport":
        cmd_freeport(argv)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
