// Package cuda runs Jamba on an NVIDIA GPU without cgo: the driver API
// (libcuda.so.1) and cuBLAS are loaded at run time with purego, and the
// kernels (kernels/jamba.cu) are compiled by nvcc into a fatbin that is
// embedded in the binary. Open fails with an error wrapping ErrUnavailable
// on machines without a driver, GPU or cuBLAS.
//
// A Model holds the weights in GPU memory (uploaded once from a
// model.Model, or random for benchmarks); a Seq is one sequence's hybrid
// cache on the GPU; Forward runs a batch of sequences like
// model.Workspace.Forward, in float32 arithmetic that agrees with the CPU
// engine to a few parts per million of the largest logit. See docs/GPU.md.
package cuda
