#!/usr/bin/env python3
"""Reference tensors and logits from torchvision for tests/core/graph_network_test.cpp.

  torchvision_reference.py reference MODEL OUT_DIR [--seed N]
      builds torchvision's MODEL (resnet18 or mobilenetv2) edited for 1x28x28 inputs and 10
      classes as core/src/zoo_graphs.cpp describes, seeds it (batchnorm statistics and affine
      parameters randomised too, so that inference exercises them), and writes OUT_DIR/ref.json
      (names, shapes and float32 offsets) and OUT_DIR/ref.bin (raw little-endian float32): every
      state_dict tensor except num_batches_tracked, "input:x" (3 raw images in [0, 1]) and
      "output:logits" (eval-mode logits of the normalised images).
  torchvision_reference.py epoch MODEL --images N --batch B --threads T
      prints the seconds of one SGD training epoch on N random images.
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torchvision

MEAN, STD = 0.2860, 0.3530


def build(name):
    if name == "resnet18":
        model = torchvision.models.resnet18(num_classes=10)
        model.conv1 = nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif name == "mobilenetv2":
        model = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5)
        out = model.features[0][0].out_channels
        model.features[0][0] = nn.Conv2d(1, out, 3, stride=1, padding=1, bias=False)
    else:
        raise SystemExit("unknown model " + name)
    return model


def reference(args):
    torch.manual_seed(args.seed)
    model = build(args.model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    model.eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        logits = model((x - MEAN) / STD)
    entries = [(k, v) for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")]
    entries += [("input:x", x), ("output:logits", logits)]
    os.makedirs(args.out, exist_ok=True)
    index, offset = [], 0
    with open(os.path.join(args.out, "ref.bin"), "wb") as f:
        for name, t in entries:
            data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
            index.append({"name": name, "shape": list(t.shape), "offset": offset})
            offset += len(data) // 4
            f.write(data)
    with open(os.path.join(args.out, "ref.json"), "w") as f:
        json.dump({"tensors": index}, f)


def epoch(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model)
    model.train()
    x = torch.rand(args.images, 1, 28, 28)
    y = torch.randint(0, 10, (args.images,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start = time.perf_counter()
    for i in range(0, args.images, args.batch):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model((x[i:i + args.batch] - MEAN) / STD),
                                           y[i:i + args.batch])
        loss.backward()
        opt.step()
    print("%.3f" % (time.perf_counter() - start))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reference")
    r.add_argument("model")
    r.add_argument("out")
    r.add_argument("--seed", type=int, default=7)
    e = sub.add_parser("epoch")
    e.add_argument("model")
    e.add_argument("--images", type=int, default=1024)
    e.add_argument("--batch", type=int, default=64)
    e.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    reference(args) if args.command == "reference" else epoch(args)


if __name__ == "__main__":
    main()
