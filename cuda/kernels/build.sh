#!/bin/sh
# Compiles the CUDA kernels into kernels/jamba.fatbin, which the cuda package
# embeds: sm_90 machine code (Hopper) plus compute_80 PTX that the driver
# compiles at load time for any other GPU of compute capability 8.0 or newer.
# Run from the cuda folder (go generate ./cuda) where nvcc is installed.
set -eu
cd "$(dirname "$0")"
NVCC="${NVCC:-nvcc}"
"$NVCC" -O3 -std=c++17 --fatbin \
  -gencode arch=compute_90,code=sm_90 \
  -gencode arch=compute_80,code=compute_80 \
  -Xptxas -v -o jamba.fatbin.tmp jamba.cu
mv jamba.fatbin.tmp jamba.fatbin
