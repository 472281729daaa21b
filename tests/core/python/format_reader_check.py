#!/usr/bin/env python3
"""Runs the h5py reader of docs/format.md §12 as a user would copy it, for
tests/core/format_reader_test.cpp.

  format_reader_check.py FORMAT_MD MODEL.h5 X.bin LOGITS.bin N,C,H,W
      reads MODEL.h5 with §12's read_model, runs its graph with §12's run_graph on the raw
      float32 batch in X.bin (shape N,C,H,W) and compares with the logits mcompress computed
      (LOGITS.bin, float32 [N, classes]): prints the largest difference relative to the largest
      logit and exits 1 when it is above 1e-4.
"""
import re
import sys

import numpy as np


def section_12_code(path):
    text = open(path, encoding="utf-8").read()
    section = text[text.index("## 12. Reading a model with h5py"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def main():
    doc, model_path, x_path, logits_path, shape = sys.argv[1:6]
    reader = {"__name__": "format_md_section_12"}
    exec(compile(section_12_code(doc), "docs/format.md §12", "exec"), reader)
    model = reader["read_model"](model_path)
    x = np.fromfile(x_path, dtype="<f4").reshape([int(d) for d in shape.split(",")])
    got = reader["run_graph"](model["arch"], model["tensors"], x)
    want = np.fromfile(logits_path, dtype="<f4").reshape(got.shape)
    error = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
    print(f"version {model['version']}, {len(model['tensors'])} tensors, largest relative "
          f"difference {error:.3g}")
    sys.exit(0 if error <= 1e-4 else 1)


if __name__ == "__main__":
    main()
