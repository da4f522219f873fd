package gguf

import "strconv"

// Type is a ggml tensor type id, as stored in a GGUF tensor info.
type Type uint32

// The ggml tensor types. Ids 4, 5, 31-33 and 36-38 were removed from ggml
// and are rejected like any id at or beyond typeCount.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
	NVFP4   Type = 40
	Q1_0    Type = 41
	Q2_0    Type = 42

	typeCount = 43
)

// QK_K is the number of elements in a K-quant super-block.
const QK_K = 256

type typeTraits struct {
	name       string
	blockSize  int // elements per block
	blockBytes int // bytes per block
}

// traits lists every type ggml can store in a GGUF file, with ggml's block
// geometry (ggml.c type_traits, ggml-common.h block structs).
var traits = [typeCount]typeTraits{
	F32:     {"F32", 1, 4},
	F16:     {"F16", 1, 2},
	Q4_0:    {"Q4_0", 32, 18},
	Q4_1:    {"Q4_1", 32, 20},
	Q5_0:    {"Q5_0", 32, 22},
	Q5_1:    {"Q5_1", 32, 24},
	Q8_0:    {"Q8_0", 32, 34},
	Q8_1:    {"Q8_1", 32, 36},
	Q2_K:    {"Q2_K", QK_K, 84},
	Q3_K:    {"Q3_K", QK_K, 110},
	Q4_K:    {"Q4_K", QK_K, 144},
	Q5_K:    {"Q5_K", QK_K, 176},
	Q6_K:    {"Q6_K", QK_K, 210},
	Q8_K:    {"Q8_K", QK_K, 292},
	IQ2_XXS: {"IQ2_XXS", QK_K, 66},
	IQ2_XS:  {"IQ2_XS", QK_K, 74},
	IQ3_XXS: {"IQ3_XXS", QK_K, 98},
	IQ1_S:   {"IQ1_S", QK_K, 50},
	IQ4_NL:  {"IQ4_NL", 32, 18},
	IQ3_S:   {"IQ3_S", QK_K, 110},
	IQ2_S:   {"IQ2_S", QK_K, 82},
	IQ4_XS:  {"IQ4_XS", QK_K, 136},
	I8:      {"I8", 1, 1},
	I16:     {"I16", 1, 2},
	I32:     {"I32", 1, 4},
	I64:     {"I64", 1, 8},
	F64:     {"F64", 1, 8},
	IQ1_M:   {"IQ1_M", QK_K, 56},
	BF16:    {"BF16", 1, 2},
	TQ1_0:   {"TQ1_0", QK_K, 54},
	TQ2_0:   {"TQ2_0", QK_K, 66},
	MXFP4:   {"MXFP4", 32, 17},
	NVFP4:   {"NVFP4", 64, 36},
	Q1_0:    {"Q1_0", 128, 18},
	Q2_0:    {"Q2_0", 64, 18},
}

func (t Type) traits() typeTraits {
	if t < typeCount {
		return traits[t]
	}
	return typeTraits{}
}

// Known reports whether t is a type ggml defines (whether or not this
// package can convert it).
func (t Type) Known() bool { return t.traits().blockSize != 0 }

// String returns the type's name as llama.cpp's tools print it in upper
// case ("Q4_K", "BF16"), or "type(N)" for an unknown id.
func (t Type) String() string {
	if n := t.traits().name; n != "" {
		return n
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// BlockSize returns the number of elements in one block (1 for the plain
// types), or 0 for an unknown type.
func (t Type) BlockSize() int { return t.traits().blockSize }

// BlockBytes returns the size of one block in bytes, or 0 for an unknown
// type.
func (t Type) BlockBytes() int { return t.traits().blockBytes }

// BitsPerWeight returns the storage cost of one element in bits (4.5 for
// Q4_K), or 0 for an unknown type.
func (t Type) BitsPerWeight() float64 {
	tr := t.traits()
	if tr.blockSize == 0 {
		return 0
	}
	return float64(8*tr.blockBytes) / float64(tr.blockSize)
}

// Quantized reports whether t stores blocks of several elements.
func (t Type) Quantized() bool { return t.traits().blockSize > 1 }

// CanDequantize reports whether Dequantize converts t to float32: F32, F16,
// BF16, F64, the integer types and the quantized types Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K ... Q6_K and Q8_K.
func (t Type) CanDequantize() bool {
	switch t {
	case F32, F16, BF16, F64, I8, I16, I32, I64,
		Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K:
		return true
	}
	return false
}

// CanQuantize reports whether Quantize produces t from float32: F32, F16,
// BF16 and the quantized types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K
// and Q8_K, with ggml's reference rounding.
func (t Type) CanQuantize() bool {
	switch t {
	case F32, F16, BF16,
		Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K:
		return true
	}
	return false
}

// RowBytes returns the bytes of n elements of type t, or -1 if t is unknown,
// n is negative or not a multiple of the block size, or the size overflows.
func (t Type) RowBytes(n int64) int64 {
	tr := t.traits()
	if tr.blockSize == 0 || n < 0 || n%int64(tr.blockSize) != 0 {
		return -1
	}
	blocks := n / int64(tr.blockSize)
	if blocks > maxInt64/int64(tr.blockBytes) {
		return -1
	}
	return blocks * int64(tr.blockBytes)
}

// ParseType returns the type named s (case-insensitive, "q4_k" or "Q4_K").
func ParseType(s string) (Type, bool) {
	for i, tr := range traits {
		if tr.name != "" && equalFold(tr.name, s) {
			return Type(i), true
		}
	}
	return 0, false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

const maxInt64 = int64(^uint64(0) >> 1)
