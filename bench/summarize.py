"""Tabulate ``bench/fanout.py --json`` results: one row per run, then medians.

Usage::

    .venv/bin/python bench/summarize.py bench/out/final/*.json

Runs are grouped by (clients, rate, server); the median table is in Markdown,
with the ratio of each server's median deliveries per server CPU-second to the
bare (buffered) server's for the same workload.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

_COLUMNS = ("deliveries/s", "lost", "p50 ms", "p90 ms", "p99 ms", "max ms", "server CPU s",
            "deliveries/CPU-s", "RSS MiB", "gen CPU s", "other CPU s")


def _row(r: dict[str, Any]) -> list[float]:
    lat = r["latency_ms"]
    return [r["deliveries_per_s"], r["lost_deliveries"], lat["p50"], lat["p90"], lat["p99"],
            lat["max"], r["server_cpu_s"], r["deliveries_per_server_cpu_s"],
            (r["server_rss_kib"] or 0) / 1024, sum(r["generator_cpu_s"]), r.get("other_cpu_s", 0.0)]


def _fmt(values: list[float]) -> list[str]:
    out = []
    for name, v in zip(_COLUMNS, values, strict=True):
        if name in ("deliveries/s", "deliveries/CPU-s"):
            out.append(f"{v:,.0f}")
        elif name == "lost":
            out.append(f"{v:.0f}")
        else:
            out.append(f"{v:.1f}")
    return out


def main() -> None:
    groups: dict[tuple[int, float, str], list[dict[str, Any]]] = defaultdict(list)
    for path in sys.argv[1:]:
        r = json.loads(Path(path).read_text())
        groups[(r["clients"], r["rate"], r["server"])].append(r)
    print("| workload | server | runs | " + " | ".join(_COLUMNS) + " |")
    print("|" + " --- |" * (len(_COLUMNS) + 3))
    for (clients, rate, server), runs in sorted(groups.items()):
        for r in runs:
            print(f"| {clients} x {rate:g}/s | {server} | 1 | " + " | ".join(_fmt(_row(r)))
                  + " |")
    print()
    print("Medians:\n")
    print("| workload | server | runs | " + " | ".join(_COLUMNS) + " | vs bare |")
    print("|" + " --- |" * (len(_COLUMNS) + 4))
    medians: dict[tuple[int, float, str], list[float]] = {}
    for key, runs in sorted(groups.items()):
        rows = [_row(r) for r in runs]
        medians[key] = [statistics.median(col) for col in zip(*rows, strict=True)]
    for (clients, rate, server), med in medians.items():
        bare = medians.get((clients, rate, "bare"))
        ratio = f"{med[7] / bare[7]:.2f}" if bare else "-"
        print(f"| {clients} x {rate:g}/s | {server} | {len(groups[(clients, rate, server)])} | "
              + " | ".join(_fmt(med)) + f" | {ratio} |")


if __name__ == "__main__":
    main()
