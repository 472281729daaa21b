#!/usr/bin/env python3
"""Two builds side by side on the glance table's files: each checkout evaluates the files in its
own runs/ with its own build/apps/mcompress, row by row, interleaved, so that the machine's state
is the same for both (CHANGELOG.md's before/after tables).

usage: experiments/compare_builds.py OLD_CHECKOUT NEW_CHECKOUT [--threads 1]

Make the files first in each checkout (`experiments/results.py --sections prune codebook distill
glance`, or the commands of results_table.py in checkouts older than results.py), from the same
runs/zoo files, so that the comparison isolates the stages. Prints a Markdown table; a file one
side lacks shows as —.
"""
import argparse
import json
import os
import subprocess

from results import QUANT_MODES, VARIANTS, environment


def evaluate(root, path, threads, env):
    full = os.path.join(root, path)
    if not os.path.exists(full):
        return None
    done = subprocess.run([os.path.join(root, "build", "apps", "mcompress"), "eval", full, "--json",
                           "--threads", str(threads), "--latency-batch", "1", "64"],
                          env=env, cwd=root, capture_output=True, text=True, check=True)
    r = json.loads(done.stdout)
    speedup = {x["batch"]: x["speedup"] for x in r["latency"]}[64]
    return 100 * r["accuracy"], r["file_bytes"] / 1024, speedup


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    env = environment(a.threads)
    print("| model | variant | accuracy before | accuracy after | size before (KiB) | size after (KiB) "
          "| speed-up b64 before | speed-up b64 after |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model, variants in VARIANTS.items():
        rows = [("fp32", f"runs/zoo/{model}.h5")]
        rows += [(mode, f"runs/quant/{model}-{mode}.h5") for mode in QUANT_MODES]
        rows += [(name, path) for name, path, _ in variants]
        for name, path in rows:
            b = evaluate(a.old, path, a.threads, env)
            n = evaluate(a.new, path, a.threads, env)
            cell = lambda r, i, fmt: fmt % r[i] if r else "—"
            print(f"| {model} | {name} | {cell(b, 0, '%.2f')} | {cell(n, 0, '%.2f')} | {cell(b, 1, '%.1f')} "
                  f"| {cell(n, 1, '%.1f')} | {cell(b, 2, '%.2fx')} | {cell(n, 2, '%.2fx')} |", flush=True)


if __name__ == "__main__":
    main()
