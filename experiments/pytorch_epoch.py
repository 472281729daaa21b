#!/usr/bin/env python3
"""Times one training epoch of a zoo model in PyTorch's Python front end, for comparison with
`mcompress train` (docs/results.md). Same architecture, optimizer (Adam, lr 1e-3), batch size
(128), data (54000 Fashion-MNIST training images, or the training part of the first LIMIT, as
`mcompress train --limit LIMIT` with its 10% validation split) and thread count. The graph zoo
(resnet18, mobilenetv2) is torchvision's models, edited as tests/core/python/
torchvision_reference.py builds them (the same edit core/src/zoo_graphs.cpp makes).

usage: experiments/pytorch_epoch.py ARCH THREADS [LIMIT]
"""
import gzip
import struct
import sys
import time

import os

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "core", "python"))

DATA = "/usr/share/datasets/fashion-mnist"


def load_images(path):
    with gzip.open(path, "rb") as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(n, 1, h, w)


def load_labels(path):
    with gzip.open(path, "rb") as f:
        struct.unpack(">II", f.read(8))
        return np.frombuffer(f.read(), dtype=np.uint8)


class Residual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


def zoo(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100),
                             nn.ReLU(), nn.Linear(100, 10))
    if name == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                             nn.Linear(84, 10))
    if name == "convnet":
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        return nn.Sequential(*block(1, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
                             *block(64, 64), *block(64, 128), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Dropout(0.3), nn.Linear(1152, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "resnet8":
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             Residual(16, 16, 1), Residual(16, 32, 2), Residual(32, 64, 2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    if name in ("resnet18", "mobilenetv2"):
        from torchvision_reference import build  # torchvision, edited for 1x28x28 inputs
        return build(name)
    raise SystemExit(f"unknown arch {name}")


def main():
    arch, threads = sys.argv[1], int(sys.argv[2])
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 60000
    n_train = limit - round(limit * 0.1)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(load_images(f"{DATA}/train-images-idx3-ubyte.gz").astype(np.float32) / 255)
    y = torch.from_numpy(load_labels(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
    x, y = x[:n_train], y[:n_train]
    model = zoo(arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean, std = 0.2860, 0.3530
    model.train()
    start = time.perf_counter()
    order = torch.randperm(x.shape[0])
    for b in range(0, x.shape[0], 128):
        idx = order[b:b + 128]
        xb, yb = x[idx], y[idx]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model((xb - mean) / std), yb)
        loss.backward()
        opt.step()
    print(f"pytorch {arch} threads={threads} epoch_seconds={time.perf_counter() - start:.2f}")


if __name__ == "__main__":
    main()
