#!/usr/bin/python3
"""Writes the hostile TorchScript files of the hostile-input corpus (tests/apps/hostile_input_test.cpp).

  hostile_torchscript.py KIND OUT.pt

Every file is a flatten + Linear(784, 10) chain that `mcompress import` can read, wrapped so
that importing it meets one threat (docs/reliability.md, "Threats"):
  loop       forward never returns
  prints     forward prints a fake "mcompress: ok" line, then returns the chain's output
  raises     forward raises RuntimeError("boom from the model")
  far_view   the Linear weight's storage offset is moved past the end of its storage
  near_view  the offset is moved so that the view's end reaches past its storage
"""
import io
import sys
import zipfile

import torch
import torch.nn as nn

torch.manual_seed(0)


class Loop(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        i = 0
        while i >= 0:
            i = i + 1
        return self.net(x)


class Prints(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        print("mcompress: ok")
        return self.net(x)


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        if x.numel() > 0:
            raise RuntimeError("boom from the model")
        return self.net(x)


OFFSET = 4660  # pickled as BININT2 b"M\x34\x12": distinctive, so it can be patched in place


def viewed_chain():
    """A chain whose Linear weight is a view at OFFSET into a larger storage."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    storage = torch.zeros(OFFSET + 7840)
    storage[OFFSET:].copy_(model[1].weight.detach().reshape(-1))
    model[1].weight = nn.Parameter(storage[OFFSET:].view(10, 784))
    return model


def patch_offset(path, new_offset):
    """Rewrites data.pkl of the archive with the weight's storage offset changed."""
    old = b"M" + OFFSET.to_bytes(2, "little")
    new = b"M" + new_offset.to_bytes(2, "little")
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                assert data.count(old) == 1, data.count(old)
                data = data.replace(old, new)
            z.writestr(info.filename, data)
    with open(path, "wb") as f:
        f.write(out.getvalue())


def main():
    kind, out = sys.argv[1], sys.argv[2]
    if kind in ("far_view", "near_view"):
        torch.jit.save(torch.jit.script(viewed_chain()), out)
        patch_offset(out, 65000 if kind == "far_view" else OFFSET + 100)
        return
    model = {"loop": Loop, "prints": Prints, "raises": Raises}[kind]()
    torch.jit.save(torch.jit.script(model), out)


if __name__ == "__main__":
    main()
