package gguf

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"testing"
)

// testdata/ggml-reference.bin.gz holds the outputs of ggml's own
// quantize_row_*_ref, dequantize_row_*, GGML_FP32_TO_FP16,
// GGML_FP16_TO_FP32 and GGML_FP32_TO_BF16 (ggml-quants.c and ggml-impl.h
// of llama.cpp as bundled in node-llama-cpp 3.22.1, compiled with gcc -O3
// for baseline x86-64 as ggml-base is built) on:
//
//   - 23 rows of 256 float32 inputs per quantized type (zeros, a constant,
//     gaussians at 0.01 and 1000, uniform, all positive, all negative,
//     outliers, 1e-38 and 1e-18 magnitudes, values near the f16 maximum,
//     sparse rows, zero sub-blocks of 16 and of 32, integers, half steps,
//     bf16-rounded weights, sub-blocks below GROUP_MAX_EPS, alternating
//     signs, a ramp, infinities, NaNs, values near the float32 maximum),
//     quantized, and those blocks dequantized;
//   - edge blocks per quantized type: four byte patterns (every byte value
//     over the blocks, all 0xFF, all 0x00, random) with the scale halves d
//     (and dmin) set to 0, -0, the smallest subnormal, the largest
//     subnormal, the smallest normal, ±1, ±65504, ±inf, NaN, a signalling
//     NaN and two ordinary values;
//   - every half converted to float32, and 8192 floats (every exponent,
//     the subnormal range and its ties, random bit patterns) converted to
//     f16 and bf16.
//
// Format: "GGMLREF1", u32 record count, then records of u32 type, u32 kind
// (0: float32 in, type's bytes out; 1: type's bytes in, float32 out), u32
// element count, u32+bytes input, u32+bytes output, u32+bytes label.
type ggmlRecord struct {
	typ     Type
	kind    uint32
	n       int
	in, out []byte
	label   string
}

func readGGMLReference(t *testing.T) []ggmlRecord {
	t.Helper()
	f, err := os.Open("testdata/ggml-reference.bin.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:8]) != "GGMLREF1" {
		t.Fatalf("bad magic %q", b[:8])
	}
	le := binary.LittleEndian
	n := int(le.Uint32(b[8:]))
	p := b[12:]
	u32 := func() uint32 { v := le.Uint32(p); p = p[4:]; return v }
	bytesOf := func() []byte { k := int(u32()); s := p[:k]; p = p[k:]; return s }
	recs := make([]ggmlRecord, n)
	for i := range recs {
		r := &recs[i]
		r.typ, r.kind, r.n = Type(u32()), u32(), int(u32())
		r.in, r.out, r.label = bytesOf(), bytesOf(), string(bytesOf())
	}
	if len(p) != 0 {
		t.Fatalf("%d bytes after %d records", len(p), n)
	}
	return recs
}

func floatsOf(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// sameFloat compares bit patterns. A NaN's sign and payload come from the
// processor's arithmetic (x86 makes inf*0 the negative "indefinite" NaN,
// arm64 a positive one), so off amd64 any NaN matches a NaN.
func sameFloat(a, b float32) bool {
	if a != a && b != b && runtime.GOARCH != "amd64" {
		return true
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

func TestGGMLReference(t *testing.T) {
	recs := readGGMLReference(t)
	seen := map[string]int{}
	for _, r := range recs {
		switch r.kind {
		case 0:
			got := make([]byte, len(r.out))
			if err := Quantize(r.typ, floatsOf(r.in), got); err != nil {
				t.Errorf("%s: %v", r.label, err)
				continue
			}
			seen[fmt.Sprintf("%s quantize", r.typ)]++
			if !bytes.Equal(got, r.out) {
				bb := r.typ.BlockBytes()
				for i := 0; i < len(got); i += bb {
					if !bytes.Equal(got[i:i+bb], r.out[i:i+bb]) {
						t.Errorf("%s: block %d differs:\n got  %x\n want %x", r.label, i/bb, got[i:i+bb], r.out[i:i+bb])
						break
					}
				}
			}
		case 1:
			got := make([]float32, r.n)
			if err := Dequantize(r.typ, r.in, got); err != nil {
				t.Errorf("%s: %v", r.label, err)
				continue
			}
			seen[fmt.Sprintf("%s dequantize", r.typ)]++
			want := floatsOf(r.out)
			bad := 0
			for i := range want {
				if !sameFloat(got[i], want[i]) {
					if bad < 3 {
						t.Errorf("%s: element %d (block %d) = %g (%#08x), want %g (%#08x)", r.label, i, i/r.typ.BlockSize(), got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d elements differ", r.label, bad, len(want))
			}
		default:
			t.Fatalf("%s: unknown kind %d", r.label, r.kind)
		}
	}
	// Every type of the list must have been checked both ways (F16 and
	// BF16 dequantization of every half is covered for F16 here and for
	// BF16 by TestHalfConversions).
	for _, typ := range []Type{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, F16} {
		for _, dir := range []string{"quantize", "dequantize"} {
			if seen[fmt.Sprintf("%s %s", typ, dir)] == 0 {
				t.Errorf("no ggml reference records for %s %s", typ, dir)
			}
		}
	}
	if seen["BF16 quantize"] == 0 {
		t.Errorf("no ggml reference records for BF16 quantize")
	}
}
