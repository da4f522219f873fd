// Package gguf reads and writes GGUF files, the model format of ggml and
// llama.cpp (versions 2 and 3, little-endian), and converts ggml's tensor
// types to and from float32 exactly as ggml's reference code does.
//
// # Layout
//
// A GGUF file is: the magic "GGUF", a u32 version, a u64 tensor count, a
// u64 key/value count, the key/values (a string key, a u32 value type, the
// value; arrays carry an element type and a u64 length and may nest), the
// tensor infos (name, u32 dimension count, u64 dims innermost first, u32
// ggml type, u64 offset into the data section), padding to the alignment
// (general.alignment, default 32), and the data section. Strings are a u64
// length and bytes.
//
// # Reading
//
// Open maps a file read-only (OpenBytes parses bytes in memory) and
// validates the whole header before anything is used: magic and version,
// counts and string lengths against the bytes that remain (so no count can
// cause a large allocation; metadata arrays hold at most MaxArrayLen
// elements), value types, bools, keys and tensor names
// (non-empty, unique, names at most 63 bytes as ggml requires), dims (at
// most 4, row length a multiple of the block size, no overflow), known
// type ids, general.alignment (a u32 power of two), offsets (aligned,
// inside the file, no two tensors overlapping). Every failure is an *Error
// naming the file and the key or tensor, wrapping a sentinel (ErrTruncated,
// ErrOffset, ...) for errors.Is; no input makes the reader panic.
//
//	f, err := gguf.Open("model.gguf")
//	arch, err := f.String("general.architecture")
//	n, err := f.Int("jamba.block_count")        // any integer type
//	kv, err := f.PerLayer("jamba.attention.head_count_kv", 8) // scalar or array
//	eps, err := f.Float("jamba.attention.layer_norm_rms_epsilon")
//	toks, err := f.Strings("tokenizer.ggml.tokens")
//	v, ok := f.Value("any.key")                 // Value: Type, ElemType, Any
//	for _, t := range f.Tensors() { ... }       // TensorInfo: Name, Type, Dims, Offset, Size
//	raw, err := f.Data("blk.0.ssm_in.weight")   // bytes aliasing the mapping
//	w, err := f.Float32("blk.0.ssm_in.weight")  // dequantized copy
//	f.Close()
//
// TensorInfo.Dims is ggml's ne order (Dims[0] is the contiguous row
// length); Shape returns the PyTorch order.
//
// # Types
//
// Type is a ggml type id with its block geometry (BlockSize, BlockBytes,
// RowBytes, BitsPerWeight). Dequantize converts F32, F16, BF16, F64, I8-I64,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K to
// float32, equal bit for bit to ggml's dequantize_row_* (ggml-quants.c).
// The other ggml types (IQ*, TQ*, MXFP4, ...) are read and their bytes
// available, but not converted. Quantize converts float32 to F32, F16,
// BF16 and those quantized types with ggml's reference quantizers
// (quantize_row_*_ref, what llama-quantize runs without an importance
// matrix), byte for byte; large inputs are split over the processors.
// Block layouts are listed in dequant.go. FileType names the values of
// general.file_type ("Q4_K_M").
//
// # Writing
//
// Create (or NewWriter for an io.Writer) takes the metadata in order and
// the tensor infos (Name, Type, Dims); the tensors are then written in
// that order with Write (raw bytes) or WriteFloat32 (quantized to the
// tensor's type), and Close syncs the temporary file and renames it into
// place. Files are GGUF v3 laid out as ggml lays them out (tensors packed
// in order, each aligned and zero-padded), so writing back what the reader
// returns reproduces llama.cpp's files byte for byte.
//
//	kvs := []gguf.KV{
//		{Key: "general.architecture", Value: gguf.ValueOf("jamba")},
//		{Key: "jamba.block_count", Value: gguf.ValueOf(uint32(8))},
//		{Key: "tokenizer.ggml.tokens", Value: gguf.ValueOf(tokens)}, // []string
//	}
//	w, err := gguf.Create("out.gguf", kvs, []gguf.TensorInfo{
//		{Name: "token_embd.weight", Type: gguf.Q4_K, Dims: []int64{256, 4096}},
//	})
//	err = w.WriteFloat32("token_embd.weight", embeddings)
//	err = w.Close()
//
// Metadata values are Go values wrapped by ValueOf: uint8 ... float64,
// bool, string, slices of those for arrays, and []Value for arrays of
// arrays.
package gguf
