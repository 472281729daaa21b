#!/usr/bin/python3
"""Writes the small TorchScript files of tests/data/interop/ that the C++ import tests read
(so those tests need no Python). Run with /usr/bin/python3 from the repository root:
    /usr/bin/python3 tests/interop/python/make_fixtures.py tests/data/interop
Made with torch 1.13 (Debian's python3-torch)."""
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn


class ChainNet(nn.Module):
    """A user module whose forward chains its children in registration order, flattening
    with x.view (no Flatten module): importable (input shape 1,8,8)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = self.pool(self.relu(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


class NotAChain(nn.Module):
    """Children that chain by shape, but a forward that does more than chain them."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.relu = nn.ReLU()
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return self.b(self.relu(self.a(x))) * 2.0


def main(out):
    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    gelu = nn.Sequential(OrderedDict([
        ("features", nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.GELU())),
        ("head", nn.Linear(8, 3)),
    ])).eval()
    torch.jit.save(torch.jit.script(gelu), f"{out}/gelu.pt")
    traced = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    torch.jit.save(torch.jit.trace(traced, torch.rand(1, 1, 4, 4)), f"{out}/traced.pt")
    torch.jit.save(torch.jit.script(ChainNet().eval()), f"{out}/chain_net.pt")
    torch.jit.save(torch.jit.script(NotAChain().eval()), f"{out}/not_a_chain.pt")
    torch.save(gelu.state_dict(), f"{out}/state_dict.pt")  # a pickle, not TorchScript


if __name__ == "__main__":
    main(sys.argv[1])
