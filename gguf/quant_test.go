package gguf

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
)

// TestQuantizeSplit checks that a large input, which Quantize spreads over
// several goroutines, gives the bytes of quantizing block by block.
func TestQuantizeSplit(t *testing.T) {
	x := benchInput(3*parallelElems + 5*QK_K)
	for _, typ := range []Type{Q4_0, Q4_K, Q8_K} {
		got := make([]byte, typ.RowBytes(int64(len(x))))
		if err := Quantize(typ, x, got); err != nil {
			t.Fatal(err)
		}
		bs, bb := typ.BlockSize(), typ.BlockBytes()
		want := make([]byte, bb)
		for i := 0; i < len(x)/bs; i++ {
			if err := Quantize(typ, x[i*bs:(i+1)*bs], want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[i*bb:(i+1)*bb], want) {
				t.Fatalf("%s: block %d differs from quantizing it alone", typ, i)
			}
		}
	}
}

func TestConvertErrors(t *testing.T) {
	if err := Quantize(Q4_K, make([]float32, 100), make([]byte, 144)); !errors.Is(err, ErrSize) {
		t.Errorf("Q4_K of 100 values: %v", err)
	}
	if err := Quantize(Q8_0, make([]float32, 64), make([]byte, 67)); !errors.Is(err, ErrSize) {
		t.Errorf("Q8_0 into 67 bytes: %v", err)
	}
	if err := Quantize(IQ2_XXS, make([]float32, 256), make([]byte, 66)); !errors.Is(err, ErrType) {
		t.Errorf("IQ2_XXS: %v", err)
	}
	if err := Dequantize(Q6_K, make([]byte, 209), make([]float32, 256)); !errors.Is(err, ErrSize) {
		t.Errorf("Q6_K from 209 bytes: %v", err)
	}
	if err := Dequantize(TQ2_0, make([]byte, 66), make([]float32, 256)); !errors.Is(err, ErrType) {
		t.Errorf("TQ2_0: %v", err)
	}
}

func TestTypeNames(t *testing.T) {
	for i := Type(0); i < typeCount+2; i++ {
		if !i.Known() {
			if i.BlockSize() != 0 || i.RowBytes(0) != -1 || i.String() != "type("+itoa(int(i))+")" {
				t.Errorf("unknown type %d: %v %d", i, i, i.BlockSize())
			}
			continue
		}
		p, ok := ParseType(i.String())
		if !ok || p != i {
			t.Errorf("ParseType(%q) = %v, %v", i.String(), p, ok)
		}
	}
	if typ, ok := ParseType("q4_k"); !ok || typ != Q4_K || Q4_K.BitsPerWeight() != 4.5 || Q6_K.BitsPerWeight() != 6.5625 {
		t.Errorf("q4_k: %v %v", typ, ok)
	}
	for ft, name := range fileTypeNames {
		if p, ok := ParseFileType(name); !ok || p != ft || ft.String() != name {
			t.Errorf("file type %d %q: %v %v", ft, name, p, ok)
		}
	}
	if FileMostlyQ4_K_M.String() != "Q4_K_M" || FileType(4).String() != "file_type(4)" {
		t.Errorf("file type names: %v %v", FileMostlyQ4_K_M, FileType(4))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
