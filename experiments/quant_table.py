#!/usr/bin/env python3
"""Quantization results table (docs/results.md): for each zoo model, the fp32 model and its
fp16, int8-dynamic, int8-static and QAT forms: test accuracy, file size, latency at batch 1
and 64 and the speed-up over the fp32 plan of the same model, all measured by `mcompress eval`
in this run.

usage: experiments/quant_table.py [--models mlp lenet5 convnet resnet8] [--threads 1]
       [--modes fp16 int8-dynamic int8-static qat] [--zoo runs/zoo] [--out runs/quant]
Trains missing fp32 models with `mcompress train` defaults first.
"""
import argparse
import json
import os
import subprocess
import sys

from results import cpu_name, environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MC = os.path.join(ROOT, "build", "apps", "mcompress")


def run(args, env):
    done = subprocess.run([MC] + args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mcompress {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mlp", "lenet5", "convnet", "resnet8"])
    p.add_argument("--modes", nargs="+", default=["fp16", "int8-dynamic", "int8-static", "qat"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--zoo", default="runs/zoo")
    p.add_argument("--out", default="runs/quant")
    a = p.parse_args()
    os.chdir(ROOT)
    env = environment(a.threads)
    os.makedirs(a.zoo, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    threads = ["--threads", str(a.threads)]

    print(f"CPU: {cpu_name()}; threads: {a.threads}; OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(auto)')}")
    print()
    print("| model | variant | accuracy (%) | Δ vs fp32 (points) | size (KiB) | ratio | batch 1 (ms) | batch 64 (ms) | speed-up b1 | speed-up b64 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in a.models:
        fp32 = os.path.join(a.zoo, f"{model}.h5")
        if not os.path.exists(fp32):
            run(["train", "--arch", model, "--seed", "0", "--quiet", "--out", fp32] + threads, env)
        variants = [("fp32", fp32)]
        for mode in a.modes:
            out = os.path.join(a.out, f"{model}-{mode}.h5")
            extra = ["--observer", "compare"] if mode == "int8-static" else []
            run(["quantize", fp32, "--mode", mode, "--out", out, "--force"] + extra + threads, env)
            variants.append((mode, out))
        base = None
        for name, path in variants:
            r = json.loads(run(["eval", path, "--json", "--latency-batch", "1", "64"] + threads, env))
            if base is None:
                base = r
            lat = {x["batch"]: x for x in r["latency"]}
            print(f"| {model} | {name} | {100 * r['accuracy']:.2f} | {100 * (r['accuracy'] - base['accuracy']):+.2f} "
                  f"| {r['file_bytes'] / 1024:.1f} | {base['file_bytes'] / r['file_bytes']:.2f}x "
                  f"| {lat[1]['median_ms']:.3f} | {lat[64]['median_ms']:.3f} "
                  f"| {lat[1]['speedup']:.2f}x | {lat[64]['speedup']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
