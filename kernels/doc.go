// Package kernels holds the numeric building blocks of the engine: matrix
// products with float32 activations and f32, bf16, int8 or block-quantized
// weights (BlockFormat; DequantizeQ4_0, DequantizeQ4K, DequantizeQ6K and
// DequantizeQ8_0 widen ggml's blocks exactly), and the vector operations
// around them. It knows nothing about any model.
//
// Every kernel has a plain-Go reference (the functions ending in Generic, or
// the loop quoted in its doc comment) that tests compare the fast path with.
package kernels
