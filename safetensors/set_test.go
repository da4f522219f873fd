package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/jamba-go/jamba/internal/testutil"
)

// memFiles serves files built with Marshal from memory and records which
// were opened.
type memFiles struct {
	files  map[string][]byte
	opened []string
}

func (m *memFiles) open(name string) (*File, error) {
	m.opened = append(m.opened, name)
	b, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, os.ErrNotExist)
	}
	return OpenBytes(name, b)
}

func shard(t *testing.T, names ...string) []byte {
	t.Helper()
	var ts []Tensor
	for _, n := range names {
		ts = append(ts, Tensor{TensorInfo: TensorInfo{Name: n, DType: U8, Shape: []int{2}}, Data: []byte{1, 2}})
	}
	b, err := Marshal(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func index(weightMap map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{"metadata": map[string]int{"total_size": 0}, "weight_map": weightMap})
	return b
}

func TestNewSetBad(t *testing.T) {
	good := map[string][]byte{}
	tests := []struct {
		name      string
		index     []byte
		files     map[string][]byte
		want      error
		tensor    string
		noOpening bool // the index must be rejected before anything is opened
	}{
		{"absolute path", index(map[string]string{"a": "/etc/model.safetensors"}), good, ErrInvalidFileName, "a", true},
		{"parent dir", index(map[string]string{"a": "../model.safetensors"}), good, ErrInvalidFileName, "a", true},
		{"dot dot inside", index(map[string]string{"a": "x..safetensors"}), good, ErrInvalidFileName, "a", true},
		{"separator", index(map[string]string{"a": "sub/model.safetensors"}), good, ErrInvalidFileName, "a", true},
		{"backslash", index(map[string]string{"a": `sub\model.safetensors`}), good, ErrInvalidFileName, "a", true},
		{"NUL", index(map[string]string{"a": "m\x00.safetensors"}), good, ErrInvalidFileName, "a", true},
		{"drive", index(map[string]string{"a": "C:model.safetensors"}), good, ErrInvalidFileName, "a", true},
		{"wrong suffix", index(map[string]string{"a": "model.bin"}), good, ErrInvalidFileName, "a", true},
		{"suffix only", index(map[string]string{"a": ".safetensors"}), good, ErrInvalidFileName, "a", true},
		{"empty name", index(map[string]string{"a": ""}), good, ErrInvalidFileName, "a", true},
		{"one bad among good", index(map[string]string{"a": "a.safetensors", "b": "../b.safetensors"}), good, ErrInvalidFileName, "b", true},
		{"not JSON", []byte("{"), good, ErrInvalidIndex, "", true},
		{"not object", []byte(`[]`), good, ErrInvalidIndex, "", true},
		{"trailing data", []byte(`{"weight_map":{"a":"a.safetensors"}} x`), good, ErrInvalidIndex, "", true},
		{"no weight_map", []byte(`{"metadata":{}}`), good, ErrInvalidIndex, "", true},
		{"empty weight_map", []byte(`{"weight_map":{}}`), good, ErrInvalidIndex, "", true},
		{"weight_map value not string", []byte(`{"weight_map":{"a":1}}`), good, ErrInvalidIndex, "", true},
		{"duplicate weight_map key", []byte(`{"weight_map":{"a":"a.safetensors","a":"b.safetensors"}}`), good, ErrDuplicateKey, "", true},
		{"duplicate top key", []byte(`{"weight_map":{"a":"a.safetensors"},"weight_map":{"a":"a.safetensors"}}`), good, ErrDuplicateKey, "", true},
		{"duplicate in metadata", []byte(`{"metadata":{"total_size":1,"total_size":2},"weight_map":{"a":"a.safetensors"}}`), good, ErrDuplicateKey, "", true},
		{"listed but absent", index(map[string]string{"a": "s1.safetensors", "b": "s1.safetensors"}),
			map[string][]byte{"s1.safetensors": shard(t, "a")}, ErrMissingTensor, "b", false},
		{"in two shards", index(map[string]string{"a": "s1.safetensors", "b": "s2.safetensors"}),
			map[string][]byte{"s1.safetensors": shard(t, "a"), "s2.safetensors": shard(t, "a", "b")}, ErrDuplicateTensor, "a", false},
		{"in two shards, listed in the second", index(map[string]string{"a": "s2.safetensors", "b": "s1.safetensors"}),
			map[string][]byte{"s1.safetensors": shard(t, "a", "b"), "s2.safetensors": shard(t, "a")}, ErrDuplicateTensor, "a", false},
		{"present but unlisted", index(map[string]string{"a": "s1.safetensors"}),
			map[string][]byte{"s1.safetensors": shard(t, "a", "extra")}, ErrUnlistedTensor, "extra", false},
		{"listed in another shard", index(map[string]string{"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}),
			map[string][]byte{"s1.safetensors": shard(t, "a"), "s2.safetensors": shard(t, "b", "c")}, ErrUnlistedTensor, "b", false},
		{"shard missing", index(map[string]string{"a": "s1.safetensors"}), good, os.ErrNotExist, "", false},
		{"shard corrupt", index(map[string]string{"a": "s1.safetensors"}),
			map[string][]byte{"s1.safetensors": []byte("junk")}, ErrHeaderTooSmall, "", false},
		{"single file missing", nil, good, os.ErrNotExist, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &memFiles{files: tt.files}
			s, err := NewSet(tt.index, m.open)
			if err == nil {
				s.Close()
				t.Fatalf("NewSet succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if tt.tensor != "" && e.Tensor != tt.tensor {
				t.Errorf("error %q names tensor %q, want %q", err, e.Tensor, tt.tensor)
			}
			if tt.noOpening && len(m.opened) != 0 {
				t.Errorf("opened %v before rejecting the index", m.opened)
			}
		})
	}
}

func TestNewSetInMemory(t *testing.T) {
	m := &memFiles{files: map[string][]byte{
		"s1.safetensors": shard(t, "b", "a"),
		"s2.safetensors": shard(t, "c"),
	}}
	s, err := NewSet(index(map[string]string{"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}), m.open)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Names(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Names() = %v", got)
	}
	if got := s.Files(); !slices.Equal(got, []string{"s1.safetensors", "s2.safetensors"}) {
		t.Errorf("Files() = %v", got)
	}
	c, err := s.Tensor("c")
	if err != nil || c.File != "s2.safetensors" || !slices.Equal(c.Data, []byte{1, 2}) {
		t.Errorf("Tensor(c) = %+v, %v", c, err)
	}
	if _, err := s.Tensor("d"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tensor(d): %v, want ErrNotFound", err)
	}
	if info, ok := s.Info("b"); !ok || info.DType != U8 || !slices.Equal(info.Shape, []int{2}) {
		t.Errorf("Info(b) = %+v, %v", info, ok)
	}
	s.Close()
	if _, err := s.Tensor("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Tensor after Close: %v", err)
	}

	// A nil index means the single file model.safetensors.
	m = &memFiles{files: map[string][]byte{SingleFileName: shard(t, "x")}}
	s, err = NewSet(nil, m.open)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); !slices.Equal(got, []string{"x"}) || !slices.Equal(m.opened, []string{SingleFileName}) {
		t.Errorf("single file set: names %v, opened %v", got, m.opened)
	}
	s.Close()
}

func TestOpenDirErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenDir(dir)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), IndexFileName) || !strings.Contains(err.Error(), SingleFileName) {
		t.Errorf("empty dir: %v", err)
	}
	// A bad index with a valid model.safetensors next to it still fails.
	if err := WriteFile(filepath.Join(dir, SingleFileName), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"weight_map":{"a":"../x.safetensors"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(dir); !errors.Is(err, ErrInvalidFileName) {
		t.Errorf("bad index: %v", err)
	}
}

func TestWriteIndexOpenDir(t *testing.T) {
	dir := t.TempDir()
	weightMap := map[string]string{}
	var total int64
	for i, names := range [][]string{{"w.0", "w.1"}, {"w.2"}} {
		file := fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)
		var ts []Tensor
		for _, n := range names {
			data, _ := EncodeFloat32(BF16, []float32{1, 2, 3})
			ts = append(ts, Tensor{TensorInfo: TensorInfo{Name: n, DType: BF16, Shape: []int{3}}, Data: data})
			weightMap[n] = file
			total += int64(len(data))
		}
		if err := WriteFile(filepath.Join(dir, file), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteIndex(dir, weightMap, total); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "metadata": {
    "total_size": 18
  },
  "weight_map": {
    "w.0": "model-00001-of-00002.safetensors",
    "w.1": "model-00001-of-00002.safetensors",
    "w.2": "model-00002-of-00002.safetensors"
  }
}
`
	if string(b) != want {
		t.Errorf("index:\n%s\nwant:\n%s", b, want)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Names(); !slices.Equal(got, []string{"w.0", "w.1", "w.2"}) {
		t.Errorf("Names() = %v", got)
	}
	v, err := mustSetTensor(t, s, "w.2").Float32()
	if err != nil || !slices.Equal(v, []float32{1, 2, 3}) {
		t.Errorf("w.2 = %v, %v", v, err)
	}
	if err := WriteIndex(dir, map[string]string{"a": "/abs.safetensors"}, 0); !errors.Is(err, ErrInvalidFileName) {
		t.Errorf("WriteIndex with an absolute shard: %v", err)
	}
}

func mustSetTensor(t *testing.T, s *Set, name string) Tensor {
	t.Helper()
	tensor, err := s.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return tensor
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// TestShardedFixture reads the 22-shard fixture written by the reference
// implementation.
func TestShardedFixture(t *testing.T) {
	dir := testutil.Fixture(t, "models/tiny-moe")
	var idx struct {
		Metadata struct {
			TotalParameters int64 `json:"total_parameters"`
			TotalSize       int64 `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	readJSON(t, filepath.Join(dir, IndexFileName), &idx)
	var cfg struct {
		VocabSize  int `json:"vocab_size"`
		HiddenSize int `json:"hidden_size"`
	}
	readJSON(t, filepath.Join(dir, "config.json"), &cfg)

	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if files := s.Files(); len(files) != 22 || files[0] != "model-00001-of-00022.safetensors" {
		t.Errorf("Files() = %v, want the 22 shards", files)
	}
	if len(s.Names()) != len(idx.WeightMap) {
		t.Errorf("%d tensors, index lists %d", len(s.Names()), len(idx.WeightMap))
	}
	shards := map[string]*File{}
	defer func() {
		for _, f := range shards {
			f.Close()
		}
	}()
	var bytes, params int64
	for name, file := range idx.WeightMap {
		info, ok := s.Info(name)
		if !ok {
			t.Errorf("%s listed in the index but not found", name)
			continue
		}
		if got := s.FileOf(name).Name(); got != filepath.Join(dir, file) {
			t.Errorf("%s found in %s, index says %s", name, got, file)
		}
		// The shape agrees with the shard's own header read separately.
		f := shards[file]
		if f == nil {
			if f, err = Open(filepath.Join(dir, file)); err != nil {
				t.Fatal(err)
			}
			shards[file] = f
		}
		own, ok := f.Info(name)
		if !ok || !slices.Equal(own.Shape, info.Shape) || own.DType != info.DType {
			t.Errorf("%s: set has %s%v, shard has %s%v", name, info.DType, info.Shape, own.DType, own.Shape)
		}
		tensor := mustSetTensor(t, s, name)
		if int64(len(tensor.Data)) != info.ByteSize() || info.DType != F32 {
			t.Errorf("%s: %s with %d bytes, want F32 with %d", name, info.DType, len(tensor.Data), info.ByteSize())
		}
		v, ok := tensor.F32View()
		if !ok {
			t.Errorf("%s: no zero-copy view of an aligned F32 tensor", name)
		}
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Errorf("%s: non-finite value %v", name, x)
				break
			}
		}
		bytes += info.ByteSize()
		params += int64(info.NumElements())
	}
	if bytes != idx.Metadata.TotalSize || params != idx.Metadata.TotalParameters || bytes == 0 {
		t.Errorf("%d bytes and %d parameters, index metadata says %+v", bytes, params, idx.Metadata)
	}
	for _, name := range []string{"model.embed_tokens.weight", "lm_head.weight"} {
		info, ok := s.Info(name)
		if !ok || !slices.Equal(info.Shape, []int{cfg.VocabSize, cfg.HiddenSize}) {
			t.Errorf("%s: shape %v, want [%d %d]", name, info.Shape, cfg.VocabSize, cfg.HiddenSize)
		}
	}
}

// TestReferenceFixture reads F64 and I64 tensors written by the reference
// implementation.
func TestReferenceFixture(t *testing.T) {
	dir := testutil.Fixture(t, "models/tiny-dense")
	var cfg struct {
		VocabSize int `json:"vocab_size"`
	}
	readJSON(t, filepath.Join(dir, "config.json"), &cfg)
	f, err := Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := mustTensor(t, f, "input_ids")
	if ids.DType != I64 || len(ids.Shape) != 2 || ids.Shape[0] != 2 {
		t.Fatalf("input_ids: %s%v, want I64[2 T]", ids.DType, ids.Shape)
	}
	v, err := ids.Int64()
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != ids.NumElements() || len(v) == 0 {
		t.Fatalf("%d ids for shape %v", len(v), ids.Shape)
	}
	distinct := map[int64]bool{}
	for i, id := range v {
		if id < 0 || id >= int64(cfg.VocabSize) || id >= 320 {
			t.Fatalf("input_ids[%d] = %d, outside [0, %d)", i, id, cfg.VocabSize)
		}
		distinct[id] = true
	}
	if len(distinct) < 2 {
		t.Errorf("input_ids has %d distinct values", len(distinct))
	}
	logits := mustTensor(t, f, "logits")
	if logits.DType != F64 || len(logits.Shape) != 3 || logits.Shape[0] != 2 || logits.Shape[1] != ids.Shape[1] || logits.Shape[2] != cfg.VocabSize {
		t.Fatalf("logits: %s%v", logits.DType, logits.Shape)
	}
	lv, err := logits.Float64()
	if err != nil {
		t.Fatal(err)
	}
	lf, err := logits.Float32()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for i, x := range lv {
		if math.IsNaN(x) || math.IsInf(x, 0) || lf[i] != float32(x) {
			t.Fatalf("logits[%d] = %v (float32 %v)", i, x, lf[i])
		}
		sum += math.Abs(x)
	}
	if sum == 0 {
		t.Error("logits are all zero")
	}
	prompt, err := mustTensor(t, f, "prompt").Int64()
	if err != nil || !slices.Equal(prompt, v[:6]) {
		t.Errorf("prompt = %v (%v), want the first 6 ids of row 0 %v", prompt, err, v[:6])
	}
}

// TestEmbeddedBF16 serves a BF16 checkpoint from memory, as the embedded
// demo model is: every BF16 tensor is a view of the bytes given, not a
// copy, and reads as its float32 conversion.
func TestEmbeddedBF16(t *testing.T) {
	b, err := os.ReadFile(testutil.Fixture(t, "models/hf-gostd-13m/model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	s, err := NewSet(nil, func(name string) (*File, error) { return OpenBytes(name, b) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	for _, name := range s.Names() {
		tensor := mustSetTensor(t, s, name)
		if tensor.DType != BF16 {
			continue
		}
		n++
		view, ok := tensor.BF16View()
		if !ok {
			t.Fatalf("%s: no BF16 view", name)
		}
		if p := uintptr(unsafe.Pointer(&view[0])); p < lo || p > hi {
			t.Fatalf("%s: the view is a copy, not the bytes given", name)
		}
		f, err := tensor.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range view {
			if f[i] != BF16ToFloat32(h) && !math.IsNaN(float64(f[i])) {
				t.Fatalf("%s[%d]: %v vs %v", name, i, f[i], BF16ToFloat32(h))
			}
		}
	}
	if n == 0 {
		t.Error("no BF16 tensors")
	}
}
