#!/usr/bin/env python3
"""docs/results.md, every table of it, in one command.

Each table of docs/results.md sits between the markers <!-- results:NAME:begin --> and
<!-- results:NAME:end --> and is the output of one section below: a command that prints a
Markdown table (or plain text, which is fenced), run here, stamped with the commit, CPU and
thread count it was measured at. The prose around the markers says how each figure is made and
carries no figures of its own; what was measured before and what changed is in CHANGELOG.md.

Sections run in the order below, which is also the order their files depend on: the zoo's fp32
models first, then the stages that start from them, then `glance`, which evaluates every file
the others made (and makes any that is still missing) in one run, then the timing sections.

usage: experiments/results.py [--threads 1] [--sections NAME ...] [--list]
       experiments/results.py --sections glance --no-produce   (evaluate only the files that exist)
"""

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MC = os.path.join(ROOT, "build", "apps", "mcompress")
DOC = os.path.join(ROOT, "docs", "results.md")

KD = "e20-lr0.003-cosine-b128"
DISTILL_LENET5 = ("experiments/distill_compare.sh student=lenet5-small epochs=20 lr=0.003 temperature=1 "
                  "alpha=0.9 out=runs/distill2")
DISTILL_MLP = ("experiments/distill_compare.sh student=mlp-small epochs=50 lr=0.003 temperature=2 "
               "alpha=0.5 out=runs/distill2")

# name -> (commands, what they print, whether the figures are timings).
# Timing sections want a quiet machine; the others give the same figures under any load.
SECTIONS = {
    "zoo": (["experiments/train_zoo.sh"], "markdown", False),
    "graph-zoo": (["EPOCHS=3 LIMIT=20000 THREADS=2 experiments/train_zoo.sh runs/zoo-graph resnet18 mobilenetv2"],
                  "markdown", False),
    "prune": (["experiments/prune_table.sh"], "markdown", False),
    "codebook": (["experiments/codebook_table.sh"], "markdown", False),
    "size": (["experiments/size_table.sh"], "markdown", False),
    "distill": ([DISTILL_LENET5, DISTILL_MLP], "markdown", False),
    "glance": (None, "markdown", True),  # evaluate_all() below
    "epoch": (["experiments/epoch_time.sh 1", "experiments/epoch_time.sh 2",
               "LIMIT=5400 experiments/epoch_time.sh 2 mobilenetv2",
               "LIMIT=1800 experiments/epoch_time.sh 2 resnet18"], "markdown", True),
    "bench-quant": (["bench/run.sh bench_quant"], "text", True),
    "bench-sparse": (["bench/run.sh bench_sparse"], "text", True),
}

# The glance table: model -> [(variant, file, command that writes it)], after the fp32 model
# and its four quantized forms (quant_table.py), which every model has.
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
         DISTILL_LENET5.replace("student=", "seeds=0 student=")),
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


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def commit():
    """The commit measured, marked when the code differs from it (docs/ and runs/ do not count)."""
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs", ":!CHANGELOG.md")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")


def environment(threads):
    env = dict(os.environ)
    with open("/proc/cpuinfo") as f:
        if "avx512f" in f.read():
            env["OPENBLAS_CORETYPE"] = "SkylakeX"  # honest fp32: see bench/run.sh
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["THREADS"] = str(threads)
    return env


class CommandFailed(Exception):
    pass


def sh(command, env):
    print(f"results: running {command}", file=sys.stderr, flush=True)
    done = subprocess.run(command, shell=True, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise CommandFailed(f"`{command}` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def error_line(failure):
    """The `mcompress: error:` line of a failed command, or its last line."""
    lines = [l for l in str(failure).splitlines() if l.strip()]
    return next((l for l in lines if l.startswith("mcompress: error:")), lines[-1])


def evaluate(path, threads, env):
    done = subprocess.run([MC, "eval", path, "--json", "--threads", str(threads),
                           "--latency-batch", "1", "64"],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"results: mcompress eval {path} failed:\n{done.stdout}{done.stderr}")
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


def evaluate_all(args, env):
    """Every variant of every model evaluated in this one run; returns the Markdown table."""
    rows, failures = [], []
    for model in args.models:
        variants = [("fp32", f"runs/zoo/{model}.h5", f"experiments/train_zoo.sh runs/zoo {model}")]
        for mode in QUANT_MODES:
            variants.append((mode, f"runs/quant/{model}-{mode}.h5",
                             f"experiments/quant_table.py --models {model} --modes {mode} "
                             f"--threads {args.threads}"))
        variants += VARIANTS[model]
        base = None
        for name, path, command in variants:
            # A recipe's result depends on the thread count (float reductions), so it runs on
            # the table's threads like everything else.
            if "mcompress compress" in command and "--threads" not in command:
                command += f" --threads {args.threads}"
            if not os.path.exists(os.path.join(ROOT, path)):
                os.makedirs(os.path.dirname(os.path.join(ROOT, path)), exist_ok=True)
                if args.no_produce:
                    failures.append(f"{model} / {name}: {path} is missing (--no-produce)")
                    print(f"results: skipping {failures[-1]}", file=sys.stderr)
                    continue
                try:
                    sh(command, env)
                except CommandFailed as failure:  # e.g. a recipe's guard stopped it: say so
                    failures.append(f"{model} / {name}: `{command}`: {error_line(failure)}")
                    print(f"results: {failures[-1]}", file=sys.stderr, flush=True)
                    continue
            r = evaluate(path, args.threads, env)
            base = base or r
            r.update(model=model, variant=name, file=path,
                     delta=r["accuracy"] - base["accuracy"], ratio=base["bytes"] / r["bytes"],
                     speedup1=base["b1"] / r["b1"], speedup64=base["b64"] / r["b64"])
            rows.append(r)
            print(f"{model:8s} {name:40s} {r['accuracy']:6.2f} {r['bytes']:9d} {r['b1']:.3f} {r['b64']:.3f}",
                  file=sys.stderr, flush=True)

    os.makedirs(os.path.join(ROOT, "runs", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "runs", "results", "table.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "variant", "file", "accuracy", "delta", "bytes", "ratio", "b1_ms",
                    "b64_ms", "speedup_b1", "speedup_b64"])
        for r in rows:
            w.writerow([r["model"], r["variant"], r["file"], f"{r['accuracy']:.2f}", f"{r['delta']:.2f}",
                        r["bytes"], f"{r['ratio']:.2f}", f"{r['b1']:.4f}", f"{r['b64']:.4f}",
                        f"{r['speedup1']:.2f}", f"{r['speedup64']:.2f}"])
    plot(rows, os.path.join(ROOT, "docs", "results-accuracy-size.png"))
    header = ("| model | variant | accuracy (%) | Δ vs fp32 (points) | size (KiB) | ratio | "
              "batch 1 (ms) | batch 64 (ms) | speed-up b1 | speed-up b64 |\n"
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    lines = [f"| {r['model']} | {r['variant']} | {r['accuracy']:.2f} | {r['delta']:+.2f} | "
             f"{r['bytes'] / 1024:.1f} | {r['ratio']:.1f}x | {r['b1']:.3f} | {r['b64']:.3f} | "
             f"{r['speedup1']:.2f}x | {r['speedup64']:.2f}x |" for r in rows]
    missing = "".join(f"\nNot made on this machine: {f}\n" for f in failures)
    return (header + "\n".join(lines) + "\n" + missing +
            "\n![accuracy against size](results-accuracy-size.png)")


ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # Google Benchmark colours a terminal's output


def run_commands(commands, kind, env):
    """The commands' outputs as one block: a table's header is kept from the first command only."""
    parts = []
    for command in commands:
        out = ANSI_COLOUR.sub("", sh(command, env)).rstrip("\n")
        if kind == "markdown" and parts:
            lines = out.split("\n")
            header = parts[0].split("\n")[:2]
            if lines[:2] == header:
                out = "\n".join(lines[2:])
            else:
                out = "\n" + out
        parts.append(out)
    text = "\n".join(parts)
    return text if kind == "markdown" else f"```text\n{text}\n```"


def splice(name, body):
    begin, end = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
    with open(DOC) as f:
        text = f.read()
    if begin not in text or end not in text:
        sys.exit(f"results: docs/results.md has no {begin} ... {end}")
    text = text[:text.index(begin) + len(begin)] + "\n" + body + "\n" + text[text.index(end):]
    tmp = DOC + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, DOC)
    print(f"results: docs/results.md section {name} updated", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--threads", type=int, default=1, help="threads of every section but `epoch`")
    p.add_argument("--models", nargs="+", default=list(VARIANTS), help="models of the glance table")
    p.add_argument("--no-produce", action="store_true", help="glance: evaluate only the files that exist")
    p.add_argument("--list", action="store_true", help="print the sections and their commands")
    a = p.parse_args()
    if a.list:
        for name, (commands, _, timing) in SECTIONS.items():
            print(f"{name:13s} {'(timing) ' if timing else ''}{'; '.join(commands or ['evaluate every file'])}")
        return
    env = environment(a.threads)
    for name in [s for s in SECTIONS if s in a.sections]:
        commands, kind, _ = SECTIONS[name]
        try:
            body = evaluate_all(a, env) if commands is None else run_commands(commands, kind, env)
        except CommandFailed as failure:
            sys.exit(f"results: section {name}: {failure}")
        shown = commands or [f"experiments/results.py --sections glance --threads {a.threads}"]
        threads = ("threads as the command or its rows say"
                   if name == "epoch" or any("THREADS=" in c for c in commands or [])
                   else f"{a.threads} thread(s)")
        stamp = (f"Measured at commit {commit()} on {cpu_name()}, {threads}, OPENBLAS_CORETYPE="
                 f"{env.get('OPENBLAS_CORETYPE', '(auto)')}, by "
                 + ", ".join(f"`{c}`" for c in shown) + ".")
        splice(name, f"{stamp}\n\n{body}")


if __name__ == "__main__":
    main()
