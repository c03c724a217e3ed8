#!/usr/bin/env python3
"""Summarises tests/benches/ab.sh's runs: per scenario and binary, each run's share of the
same-run null router and the service's CPU per delivery (µs), with their means."""
import collections
import glob
import os
import re
import sys

ROW = re.compile(
    r"^\| (?P<name>[^|]+) \| (?P<rate>[\d.]+) (?:events|deliveries)/s \| (?P<share>\d+)% \|"
    r".*\| (?P<rss>[\d.]+) MiB \| (?P<cpu>\d+)% \| (?P<lost>\d+) / (?P<dup>\d+) \|$"
)


def scenario(name):
    name = name.strip()
    return "slack" if name.startswith("e2e + slack") else name.split(" ")[0]


runs = collections.defaultdict(lambda: collections.defaultdict(list))
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.txt"))):
    binary = os.path.basename(path).rsplit("-", 1)[0]
    for line in open(path, errors="replace"):
        m = ROW.match(line.strip())
        if m and float(m["rate"]) > 0:
            cpu_us = int(m["cpu"]) / 100 * 1e6 / float(m["rate"])
            runs[scenario(m["name"])][binary].append(
                (int(m["share"]), cpu_us, float(m["rss"]), f"{m['lost']}/{m['dup']}")
            )
for name, per in runs.items():
    print(name)
    for binary, rows in sorted(per.items()):
        shares = [r[0] for r in rows]
        cpu = [r[1] for r in rows]
        print(
            f"  {binary:16} share {shares} mean {sum(shares) / len(shares):.0f}%"
            f" | CPU/delivery {[round(c) for c in cpu]} µs mean {sum(cpu) / len(cpu):.0f}"
            f" | peak RSS {[r[2] for r in rows]} MiB | lost/dup {[r[3] for r in rows]}"
        )
