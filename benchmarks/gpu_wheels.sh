#!/usr/bin/env sh
# The wheels benchmarks/bench_gpu.py needs beside JAX on a bare GPU machine (CPython 3.12, Linux x86_64,
# no network there): Keras and what Keras, soundfile and soxr import that such a machine may lack.
# Run here, with network; the folder (~5 MB) travels with the tree. On the GPU machine:
#
#   pip install --no-index --find-links benchmarks/wheels keras optree namex soxr soundfile norbert
#   python benchmarks/bench_gpu.py
#
# usage: sh benchmarks/gpu_wheels.sh [FOLDER]   (default benchmarks/wheels; PIP=... picks the pip)
set -eu
dest="${1:-$(dirname "$0")/wheels}"
pip="${PIP:-pip}"
mkdir -p "$dest"
# The versions this tree is tested with (keras 3.15: the GPU machine's JAX 0.11 needs keras >= 3.10).
# packaging (Keras), cffi + pycparser (soundfile), typing_extensions (optree) are small and usually
# installed already; pip takes them from the folder only when they are missing.
$pip download --dest "$dest" --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    "keras==3.15.1" "optree==0.20.0" "namex==0.1.0" "soxr==1.1.0" "soundfile==0.14.0" "norbert==0.2.1" \
    "packaging" "cffi" "pycparser" "typing_extensions"
ls -l "$dest"
du -sh "$dest"
