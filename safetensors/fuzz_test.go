package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"unicode/utf8"
)

// checkFile verifies the invariants of a successfully parsed file.
func checkFile(t *testing.T, f *File) {
	t.Helper()
	names := f.Names()
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Fatalf("names not sorted and unique: %q", names)
	}
	var total int64
	for _, name := range names {
		tensor, err := f.Tensor(name)
		if err != nil {
			t.Fatalf("Tensor(%q) of a valid file: %v", name, err)
		}
		n := tensor.NumElements()
		if n < 0 || len(tensor.Data) != n*tensor.DType.Size() {
			t.Fatalf("%q: %s%v with %d data bytes", name, tensor.DType, tensor.Shape, len(tensor.Data))
		}
		if int64(len(tensor.Data)) != tensor.End-tensor.Begin {
			t.Fatalf("%q: %d bytes for offsets [%d, %d]", name, len(tensor.Data), tensor.Begin, tensor.End)
		}
		total += int64(len(tensor.Data))
		var convErr error
		switch {
		case tensor.DType.IsFloat():
			var v []float32
			v, convErr = tensor.Float32()
			if len(v) != n {
				t.Fatalf("%q: Float32 gave %d values, want %d", name, len(v), n)
			}
			_, _ = tensor.F32View()
			_, _ = tensor.BF16View()
		default:
			var v []int64
			v, convErr = tensor.Int64()
			if len(v) != n {
				t.Fatalf("%q: Int64 gave %d values, want %d", name, len(v), n)
			}
		}
		if convErr != nil {
			t.Fatalf("%q: conversion of a valid tensor: %v", name, convErr)
		}
	}
	if total != f.DataSize() {
		t.Fatalf("tensors hold %d bytes, data section %d", total, f.DataSize())
	}
}

func FuzzOpenBytes(f *testing.F) {
	f.Add([]byte{})
	f.Add(raw(`{}`, nil))
	f.Add(raw(`{"__metadata__":{"format":"pt"}}  `, nil))
	f.Add(raw(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, zeros(4)))
	f.Add(raw(`{"a":{"dtype":"BF16","shape":[2,0],"data_offsets":[0,0]},"b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, zeros(8)))
	f.Add(raw(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, zeros(4)))
	f.Add(raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{}}`, zeros(1)))
	f.Add(rawLen(1<<40, "{}"))
	for _, dtype := range []DType{F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL} {
		b, err := Marshal([]Tensor{{TensorInfo: TensorInfo{Name: "x", DType: dtype, Shape: []int{1, 2}}, Data: zeros(2 * dtype.Size())}}, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenBytes("fuzz", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "fuzz" {
				t.Fatalf("error %v (%T) is not an *Error naming the file", err, err)
			}
			return
		}
		checkFile(t, file)
		// A valid file survives re-encoding unchanged.
		var tensors []Tensor
		for _, name := range file.Names() {
			tensor, _ := file.Tensor(name)
			tensors = append(tensors, tensor)
		}
		meta := file.Metadata()
		if meta == nil {
			meta = map[string]string{}
		}
		if _, ok := meta["format"]; !ok {
			meta["format"] = "pt"
		}
		b, err := Marshal(tensors, meta)
		if err != nil {
			t.Fatalf("re-encoding a valid file: %v", err)
		}
		again, err := OpenBytes("again", b)
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if !slices.Equal(again.Names(), file.Names()) || !maps.Equal(again.Metadata(), meta) {
			t.Fatalf("re-encoded file differs")
		}
		for _, tensor := range tensors {
			got, _ := again.Tensor(tensor.Name)
			if got.DType != tensor.DType || !slices.Equal(got.Shape, tensor.Shape) || !bytes.Equal(got.Data, tensor.Data) {
				t.Fatalf("%q differs after re-encoding", tensor.Name)
			}
		}
	})
}

var fuzzDTypes = []DType{F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL}

// FuzzRoundTrip writes tensors described by spec (three bytes each: dtype,
// rank, dims) with bytes drawn from payload, and reads them back.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0, 2, 0x23}, []byte("payload"), "t", "v")
	f.Add([]byte{3, 0, 0, 1, 1, 4, 9, 3, 0x44}, []byte{1, 2, 3}, "w.0", "")
	f.Add([]byte{2, 3, 0xff, 5, 1, 0, 8, 2, 0x12}, []byte{}, "a\"\\\u00e9\x01", "format")
	f.Add([]byte{1, 1, 3}, []byte{9}, "\xff", "k")
	f.Fuzz(func(t *testing.T, spec, payload []byte, name, metaKey string) {
		if len(spec) > 3*64 {
			spec = spec[:3*64]
		}
		var tensors []Tensor
		for i := 0; i+3 <= len(spec); i += 3 {
			dtype := fuzzDTypes[int(spec[i])%len(fuzzDTypes)]
			rank := int(spec[i+1]) % 5
			shape := make([]int, rank)
			for d := range shape {
				shape[d] = int(spec[i+2]>>(2*d)) & 3 // 0..3: zero-length dims included
			}
			info := TensorInfo{Name: fmt.Sprintf("%s%d", name, i/3), DType: dtype, Shape: shape}
			data := make([]byte, info.ByteSize())
			for j := range data {
				if len(payload) > 0 {
					data[j] = payload[(i+j)%len(payload)]
				}
			}
			tensors = append(tensors, Tensor{TensorInfo: info, Data: data})
		}
		meta := map[string]string{metaKey: name}
		b, err := Marshal(tensors, meta)
		if !utf8.ValidString(name) || !utf8.ValidString(metaKey) {
			if err == nil {
				t.Fatalf("invalid UTF-8 name %q / key %q accepted", name, metaKey)
			}
			return
		}
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if n := binary.LittleEndian.Uint64(b); n%8 != 0 || b[8] != '{' {
			t.Fatalf("header of %d bytes starting with %q", n, b[8])
		}
		file, err := OpenBytes("rt", b)
		if err != nil {
			t.Fatalf("OpenBytes of a written file: %v", err)
		}
		checkFile(t, file)
		if metaKey != "format" {
			meta["format"] = "pt"
		}
		if got := file.Metadata(); !maps.Equal(got, meta) {
			t.Fatalf("metadata %v, want %v", got, meta)
		}
		if file.Len() != len(tensors) {
			t.Fatalf("%d tensors read, %d written", file.Len(), len(tensors))
		}
		for _, want := range tensors {
			got, err := file.Tensor(want.Name)
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("%q: read %s%v %x, wrote %s%v %x", want.Name, got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Data)
			}
		}
	})
}
