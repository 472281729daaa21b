#!/usr/bin/env bash
# Installs what mcompress needs on Debian 12, as root. Idempotent: installs only what is
# missing, and makes OpenBLAS (not the slow reference BLAS) the active libblas.so.3.
set -euo pipefail

packages=(
  g++ cmake make ninja-build pkg-config
  libtorch-dev libhdf5-dev hdf5-tools libboost-program-options-dev libeigen3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libyaml-cpp-dev nlohmann-json3-dev zlib1g-dev
  libopenblas0-pthread libopenblas-pthread-dev
  dataset-fashion-mnist python3
  # The reliability checks (docs/reliability.md): clang-14 with its libFuzzer/ASan runtimes
  # (libclang-rt-14-dev holds libclang_rt.fuzzer-x86_64.a), clang-tidy and clang-format.
  clang libclang-rt-14-dev clang-tidy clang-format
  # experiments/results.py: jq for the experiment scripts, gnuplot for the plot.
  jq gnuplot-nox
  # The interop tests only (tests/interop/python/): Python torch trains, saves and runs the
  # TorchScript modules that `mcompress import` reads and `mcompress export` writes.
  python3-torch
  # tests/core/graph_network_test.cpp compares the graph zoo (resnet18, mobilenetv2) with
  # torchvision's models (tests/core/python/torchvision_reference.py); skipped without it.
  python3-torchvision
  # tests/core/format_reader_test.cpp runs docs/format.md's h5py reader (§12); skipped without it.
  python3-h5py
  # ONNX export (interop/): the ONNX protobuf classes and checker; the same libonnx LibTorch links.
  libonnx-dev libprotobuf-dev
  # Data-parallel runs (docs/scaling.md): c10d's ProcessGroupGloo header needs Gloo's headers
  # (libtorch-dev does not pull them in; libgloo0 is already there for libtorch).
  libgloo-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: error: missing packages and not root; run: sudo $0" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all packages present"
fi

# The reference BLAS is ~20x slower for fp32 GEMM; select OpenBLAS through alternatives.
arch_triplet=$(gcc -dumpmachine)
openblas_lib=/usr/lib/${arch_triplet}/openblas-pthread/libblas.so.3
if [ -e "$openblas_lib" ] && [ "$(id -u)" -eq 0 ]; then
  current=$(update-alternatives --query "libblas.so.3-${arch_triplet}" 2>/dev/null | awk '/^Value:/{print $2}')
  if [ "$current" != "$openblas_lib" ]; then
    update-alternatives --set "libblas.so.3-${arch_triplet}" "$openblas_lib" >/dev/null
    update-alternatives --set "liblapack.so.3-${arch_triplet}" \
      "/usr/lib/${arch_triplet}/openblas-pthread/liblapack.so.3" >/dev/null 2>&1 || true
    echo "setup: libblas.so.3 -> $openblas_lib"
  fi
fi

# ONNX Runtime for the ONNX export tests (tests/interop): the onnxruntime-node package, its CPU
# library included, pinned in third_party/onnxruntime-node/package.json and package-lock.json.
# --ignore-scripts: its install script would download CUDA pieces we do not use. Without node,
# npm or the registry the export still builds and its structural tests run; the ONNX Runtime
# comparisons skip with a message saying what is missing.
ort_dir=third_party/onnxruntime-node
cd "$(dirname "$0")/.."
if [ -f "$ort_dir/node_modules/onnxruntime-node/package.json" ] &&
  grep -q '"version": "1.30.0"' "$ort_dir/node_modules/onnxruntime-node/package.json"; then
  echo "setup: onnxruntime-node 1.30.0 present"
elif ! command -v npm >/dev/null 2>&1; then
  echo "setup: warning: npm not found; the ONNX Runtime tests will skip" \
    "(install Node.js with npm, then rerun $0)" >&2
elif (cd "$ort_dir" && timeout 300 npm ci --ignore-scripts --no-audit --no-fund >/dev/null 2>&1); then
  echo "setup: installed onnxruntime-node 1.30.0 in $ort_dir"
else
  echo "setup: warning: npm could not install onnxruntime-node (registry unreachable?);" \
    "the ONNX Runtime tests will skip" >&2
fi
