#!/usr/bin/env python3
"""Side by side: every number in the last JSON line of each benchmark's
output, baseline vs head, median over the rounds, and head/base.
Usage: bench_compare.py DIR BENCH... (files DIR/<bench>.<base|head>.<n>.txt)"""
import glob, json, statistics, sys


def last_json(path):
    obj = None
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                obj = json.loads(line)
            except ValueError:
                pass
    return obj


def flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)


def side(d, bench, which):
    runs = {}
    for path in sorted(glob.glob(f"{d}/{bench}.{which}.*.txt")):
        obj = last_json(path)
        if obj is None:
            continue
        for k, v in flatten(obj):
            runs.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in runs.items()}, len(glob.glob(f"{d}/{bench}.{which}.*.txt"))


def main():
    d, benches = sys.argv[1], sys.argv[2:]
    for b in benches:
        base, nb = side(d, b, "base")
        head, nh = side(d, b, "head")
        print(f"\n### {b} (median of {nb} base / {nh} head runs)\n")
        print("| figure | base | head | head/base |")
        print("|---|---:|---:|---:|")
        for k in base:
            if k not in head:
                continue
            r = head[k] / base[k] if base[k] else float("nan")
            print(f"| {k} | {base[k]:.4g} | {head[k]:.4g} | {r:.2f} |")


if __name__ == "__main__":
    main()
