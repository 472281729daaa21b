#!/usr/bin/python3
"""The Python half of the PyTorch round trip test (tests/interop/pytorch_roundtrip_test.cpp).

  train: trains a small nested torch.nn.Sequential briefly (seeded) on an IDX data folder and
         saves it with torch.jit.save(torch.jit.script(model)). The model expects inputs
         normalised with MEAN/STD (the test passes them to `mcompress import`).
  eval:  test accuracy of a TorchScript module on an IDX data folder (docs/interop.md).
  check: compares, on the inputs the C++ test wrote (raw float32 files),
         (a) the original Python model on normalised inputs with our runtime's outputs of the
             imported fp32 model,
         (b) the module `mcompress export` wrote for the compressed model, on raw inputs, with
             our runtime's fp32 outputs of that model (same dequantized, masked weights),
         (c) the same module with our runtime's int8 kernels (activation quantization too),
         and checks the exported state_dict keys and `quantization` attribute.
Run with /usr/bin/python3 (Debian's, with torch). Exit status 0 when every check passes.
"""
import argparse
import gzip
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

MEAN = 0.2860  # Fashion-MNIST pixel statistics: what the Python model is trained on
STD = 0.3530
# Same weights, same fp32 ops in another order (LibTorch vs TorchScript graph): rounding only.
FP32_TOLERANCE = 1e-4  # relative to max(1, max |logit|)
# Our int8 kernels also quantize activations (8 bits per layer input): a few percent of the
# logit range.
INT8_TOLERANCE = 0.02  # relative to max |logit|
INT8_MIN_AGREEMENT = 0.95  # fraction of inputs whose predicted class is the same


def read_bytes(path):
    """An IDX file, plain or gzipped (Debian's dataset-fashion-mnist ships .gz)."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def read_idx_images(path):
    data = read_bytes(path)
    magic, n, h, w = np.frombuffer(data[:16], dtype=">u4")
    assert magic == 0x803, f"{path}: not an IDX image file"
    x = np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 1, h, w)
    return torch.from_numpy(x.astype(np.float32) / 255.0)


def read_idx_labels(path):
    data = read_bytes(path)
    magic, n = np.frombuffer(data[:8], dtype=">u4")
    assert magic == 0x801, f"{path}: not an IDX label file"
    return torch.from_numpy(np.frombuffer(data[8:], dtype=np.uint8).astype(np.int64))


def make_model():
    # Nested Sequentials with named children: module paths like "features.0".
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Sequential(
            nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))),
    ]))


def train(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x = read_idx_images(f"{args.data}/train-images-idx3-ubyte")
    y = read_idx_labels(f"{args.data}/train-labels-idx1-ubyte")
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for step in range(args.steps):
        idx = torch.randint(0, x.shape[0], (32,), generator=generator)
        loss = nn.functional.cross_entropy(model((x[idx] - MEAN) / STD), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        seen = slice(0, 2000)  # enough for a progress figure, cheap on the full data set
        accuracy = (model((x[seen] - MEAN) / STD).argmax(1) == y[seen]).float().mean().item()
    torch.jit.save(torch.jit.script(model), args.out)
    print(f"trained {args.steps} steps: last batch loss {loss.item():.4f}, "
          f"accuracy on the first 2000 training images {accuracy:.4f}; saved {args.out}")


def evaluate(args):
    """Test-set accuracy of a TorchScript module; --normalise for modules that expect
    normalised inputs (the original Python model), not for mcompress exports."""
    torch.set_num_threads(1)
    x = read_idx_images(f"{args.data}/t10k-images-idx3-ubyte")
    y = read_idx_labels(f"{args.data}/t10k-labels-idx1-ubyte")
    model = torch.jit.load(args.model).eval()
    with torch.no_grad():
        logits = torch.cat([model((b - MEAN) / STD if args.normalise else b)
                            for b in x.split(1000)])
    accuracy = (logits.argmax(1) == y).float().mean().item()
    print(f"{args.model}: test accuracy {100 * accuracy:.2f}% on {len(y)} images")
    return 0


def read_f32(path, shape):
    return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(shape))


def check(args):
    failures = []
    x = read_f32(args.x, [-1, 1, 28, 28])
    n = x.shape[0]
    original = torch.jit.load(args.original).eval()
    exported = torch.jit.load(args.exported).eval()
    with torch.no_grad():
        ours_imported = read_f32(args.imported_fp32, [n, -1])
        theirs = original((x - MEAN) / STD)
        diff_a = (theirs - ours_imported).abs().max().item()
        tol_a = FP32_TOLERANCE * max(1.0, theirs.abs().max().item())
        print(f"(a) original Python model vs imported model (runtime fp32): "
              f"max |diff| {diff_a:.3g} (tolerance {tol_a:.3g})")
        if diff_a > tol_a:
            failures.append("(a) imported model differs from the original")

        out = exported(x)
        ours_fp32 = read_f32(args.compressed_fp32, [n, -1])
        diff_b = (out - ours_fp32).abs().max().item()
        tol_b = FP32_TOLERANCE * max(1.0, ours_fp32.abs().max().item())
        print(f"(b) exported compressed module vs runtime fp32 kernels: "
              f"max |diff| {diff_b:.3g} (tolerance {tol_b:.3g})")
        if diff_b > tol_b:
            failures.append("(b) exported module differs from the runtime's fp32 outputs")

        ours_int8 = read_f32(args.compressed_int8, [n, -1])
        diff_c = (out - ours_int8).abs().max().item()
        tol_c = INT8_TOLERANCE * ours_int8.abs().max().item()
        agree = (out.argmax(1) == ours_int8.argmax(1)).float().mean().item()
        print(f"(c) exported compressed module vs runtime int8 kernels: "
              f"max |diff| {diff_c:.3g} (tolerance {tol_c:.3g}), "
              f"same class for {agree:.4f} of {n} inputs (minimum {INT8_MIN_AGREEMENT})")
        if diff_c > tol_c or agree < INT8_MIN_AGREEMENT:
            failures.append("(c) exported module too far from the runtime's int8 outputs")

    keys = set(exported.state_dict().keys())
    with open(args.names) as f:
        names = {line.strip() for line in f if line.strip()}
    print(f"(d) exported state_dict: {len(keys)} keys, model tensors: {len(names)}")
    if keys != names:
        failures.append(f"(d) state_dict keys differ: extra {sorted(keys - names)}, "
                        f"missing {sorted(names - keys)}")
    quant = json.loads(exported.quantization)
    weights = [v for k, v in exported.state_dict().items() if k.endswith("weight")
               and v.dim() > 1]
    zeros = sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights)
    print(f"(e) quantization mode '{quant['mode']}', {len(quant['tensors'])} int8 tensors; "
          f"conv/linear weights {zeros:.3f} zero")
    if quant["mode"] != args.mode or not quant["tensors"]:
        failures.append(f"(e) quantization attribute: mode '{quant['mode']}', "
                        f"expected '{args.mode}' with tensors")
    if zeros < args.min_zeros:
        failures.append(f"(e) pruned weights not zero: {zeros:.3f} < {args.min_zeros}")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--normalise", action="store_true")
    c = sub.add_parser("check")
    for name in ["original", "exported", "x", "imported-fp32", "compressed-fp32",
                 "compressed-int8", "names", "mode"]:
        c.add_argument("--" + name, required=True)
    c.add_argument("--min-zeros", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "train":
        train(args)
        return 0
    if args.command == "eval":
        return evaluate(args)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
