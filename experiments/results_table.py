#!/usr/bin/env python3
"""The results table of docs/results.md and its plot, in one command.

For each zoo model (mlp, lenet5, convnet, resnet8): fp32, fp16, int8-dynamic, int8-static, QAT,
pruned, pruned + shared values (codebook), distilled students (of convnet) and the full chain of
recipes/. Each variant's file comes from the experiment that owns it, run here when the file is
missing (train_zoo.sh, quant_table.py, prune_table.sh, codebook_table.sh, distill_compare.sh,
`mcompress compress` of a recipe); then every file is evaluated the same way in this run by
`mcompress eval --json` (test accuracy on the 10000 Fashion-MNIST test images, file size,
median latency at batch 1 and 64 with the kernels the runtime picks), and size ratios and
speed-ups are against the fp32 model of the same group, measured in the same run.

Writes the table into docs/results.md between the markers
<!-- results-table:begin --> and <!-- results-table:end -->, the same rows to
runs/results/table.csv, and docs/results-accuracy-size.png (gnuplot: accuracy against size).

usage: experiments/results_table.py [--threads 1] [--models mlp lenet5 convnet resnet8]
       [--no-produce]   (evaluate only the files that exist)
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MC = os.path.join(ROOT, "build", "apps", "mcompress")
BEGIN, END = "<!-- results-table:begin -->", "<!-- results-table:end -->"

KD = "e20-lr0.003-cosine-b128"
# model -> [(variant, file, command that writes it)]
VARIANTS = {
    "mlp": [
        ("pruned 95%", "runs/prune/mlp-global95.h5", "experiments/prune_table.sh runs/zoo mlp-global95"),
        ("pruned 97% + codebook 2 bits", "runs/codebook/mlp97-b2.h5",
         "experiments/prune_table.sh runs/zoo mlp-global97 && experiments/codebook_table.sh runs/zoo mlp97"),
        ("chain: prune 95% + codebook 3 bits", "runs/deep-compression/mlp.h5",
         "build/apps/mcompress compress --recipe recipes/deep-compression.yaml --force"),
    ],
    "lenet5": [
        ("pruned 90%", "runs/prune/lenet5-global90.h5", "experiments/prune_table.sh runs/zoo lenet5-global90"),
        ("pruned 90% + codebook 4 bits", "runs/codebook/lenet5-b4.h5",
         "experiments/codebook_table.sh runs/zoo lenet5"),
        ("pruned 95% + codebook 4 bits", "runs/codebook/lenet5-95-b4.h5",
         "experiments/prune_table.sh runs/zoo lenet5-global95 && experiments/codebook_table.sh runs/zoo lenet5-95"),
        ("chain: prune 90% + codebook 4 bits", "runs/chain/lenet5.h5",
         "build/apps/mcompress compress --recipe recipes/chain-lenet5.yaml --force"),
    ],
    "convnet": [
        ("pruned: half the filters", "runs/prune/convnet-filters50.h5",
         "experiments/prune_table.sh runs/zoo convnet-filters50"),
        ("distilled student lenet5-small", f"runs/distill2/lenet5-small-kd-{KD}-T1-a0.9-s0.h5",
         "experiments/distill_compare.sh student=lenet5-small epochs=20 lr=0.003 temperature=1 "
         "alpha=0.9 out=runs/distill2"),
        ("chain: half the filters + int8-static", "runs/chain/convnet.h5",
         "build/apps/mcompress compress --recipe recipes/chain-convnet.yaml --force"),
    ],
    "resnet8": [
        ("pruned 80%", "runs/chain/resnet8.h5.ckpt/01-prune.h5",
         "build/apps/mcompress compress --recipe recipes/chain-resnet8.yaml --force"),
        ("chain: prune 80% + int8-static", "runs/chain/resnet8.h5",
         "build/apps/mcompress compress --recipe recipes/chain-resnet8.yaml --force"),
    ],
}
QUANT_MODES = ["fp16", "int8-dynamic", "int8-static", "qat"]


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def sh(command, env):
    done = subprocess.run(command, shell=True, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"results_table: `{command}` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def evaluate(path, threads, env):
    done = subprocess.run([MC, "eval", path, "--json", "--threads", str(threads),
                           "--latency-batch", "1", "64"],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"results_table: mcompress eval {path} failed:\n{done.stdout}{done.stderr}")
    r = json.loads(done.stdout)
    lat = {x["batch"]: x["median_ms"] for x in r["latency"]}
    return {"accuracy": 100 * r["accuracy"], "bytes": r["file_bytes"], "b1": lat[1], "b64": lat[64]}


def plot(rows, png):
    data = os.path.join(ROOT, "runs", "results", "plot.dat")
    models = list(dict.fromkeys(r["model"] for r in rows))
    with open(data, "w") as f:
        for m in models:
            f.write(f"# {m}\n")
            for r in rows:
                if r["model"] == m:
                    f.write(f"{r['bytes'] / 1024:.3f} {r['accuracy']:.2f} \"{r['variant'].split(':')[0]}\"\n")
            f.write("\n\n")
    series = ", ".join(
        f"'{data}' index {i} using 1:2 with points pt 7 ps 1.4 title '{m}', "
        f"'' index {i} using 1:2:3 with labels font ',7' offset 0.6,0.5 left notitle"
        for i, m in enumerate(models))
    script = f"""
set terminal png size 1100,700
set output '{png}'
set logscale x
set xlabel 'model file size (KiB, log scale)'
set ylabel 'test accuracy (%)'
set title 'mcompress on Fashion-MNIST: accuracy against file size'
set key top left box
set offsets graph 0.02, graph 0.06, graph 0.04, graph 0.04
set grid
plot {series}
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-produce", action="store_true", help="evaluate only the files that exist")
    a = p.parse_args()
    env = dict(os.environ)
    with open("/proc/cpuinfo") as f:
        if "avx512f" in f.read():
            env["OPENBLAS_CORETYPE"] = "SkylakeX"  # honest fp32: see bench/run.sh
    env["OPENBLAS_NUM_THREADS"] = str(a.threads)
    env["THREADS"] = str(a.threads)
    os.makedirs(os.path.join(ROOT, "runs", "results"), exist_ok=True)

    rows = []
    for model in a.models:
        variants = [("fp32", f"runs/zoo/{model}.h5", f"experiments/train_zoo.sh runs/zoo {model}")]
        for mode in QUANT_MODES:
            variants.append((mode, f"runs/quant/{model}-{mode}.h5",
                             f"experiments/quant_table.py --models {model} --modes {mode} "
                             f"--threads {a.threads}"))
        variants += VARIANTS[model]
        base = None
        for name, path, command in variants:
            # A recipe's result depends on the thread count (float reductions), so it runs on
            # the table's threads like everything else.
            if "mcompress compress" in command and "--threads" not in command:
                command += f" --threads {a.threads}"
            if not os.path.exists(os.path.join(ROOT, path)):
                if a.no_produce:
                    print(f"results_table: skipping {model} / {name}: {path} is missing", file=sys.stderr)
                    continue
                print(f"results_table: {path} is missing; running {command}", file=sys.stderr)
                sh(command, env)
            r = evaluate(path, a.threads, env)
            base = base or r
            r.update(model=model, variant=name, file=path,
                     delta=r["accuracy"] - base["accuracy"], ratio=base["bytes"] / r["bytes"],
                     speedup1=base["b1"] / r["b1"], speedup64=base["b64"] / r["b64"])
            rows.append(r)
            print(f"{model:8s} {name:40s} {r['accuracy']:6.2f} {r['bytes']:9d} {r['b1']:.3f} {r['b64']:.3f}",
                  file=sys.stderr, flush=True)

    header = ("| model | variant | accuracy (%) | Δ vs fp32 (points) | size (KiB) | ratio | "
              "batch 1 (ms) | batch 64 (ms) | speed-up b1 | speed-up b64 |\n"
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    lines = [f"| {r['model']} | {r['variant']} | {r['accuracy']:.2f} | {r['delta']:+.2f} | "
             f"{r['bytes'] / 1024:.1f} | {r['ratio']:.1f}x | {r['b1']:.3f} | {r['b64']:.3f} | "
             f"{r['speedup1']:.2f}x | {r['speedup64']:.2f}x |" for r in rows]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    machine = (f"CPU: {cpu_name()}; {a.threads} thread(s); OPENBLAS_CORETYPE="
               f"{env.get('OPENBLAS_CORETYPE', '(auto)')}; commit {commit}; "
               f"`experiments/results_table.py --threads {a.threads}`.")
    table = f"{machine}\n\n{header}" + "\n".join(lines) + "\n\n![accuracy against size](results-accuracy-size.png)\n"
    print(table)

    with open(os.path.join(ROOT, "runs", "results", "table.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "variant", "file", "accuracy", "delta", "bytes", "ratio", "b1_ms",
                    "b64_ms", "speedup_b1", "speedup_b64"])
        for r in rows:
            w.writerow([r["model"], r["variant"], r["file"], f"{r['accuracy']:.2f}", f"{r['delta']:.2f}",
                        r["bytes"], f"{r['ratio']:.2f}", f"{r['b1']:.4f}", f"{r['b64']:.4f}",
                        f"{r['speedup1']:.2f}", f"{r['speedup64']:.2f}"])
    plot(rows, os.path.join(ROOT, "docs", "results-accuracy-size.png"))

    doc = os.path.join(ROOT, "docs", "results.md")
    text = open(doc).read()
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN) + len(BEGIN)] + "\n" + table + text[text.index(END):]
        with open(doc, "w") as f:
            f.write(text)
        print(f"results_table: updated {doc}", file=sys.stderr)
    else:
        print(f"results_table: {doc} has no {BEGIN} ... {END} section; table printed only",
              file=sys.stderr)


if __name__ == "__main__":
    main()
