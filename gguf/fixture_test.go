package gguf

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// TestFixtureFiles reads each fixture GGUF and checks what its README
// states: the metadata, the file type, and the count of tensors per type.
func TestFixtureFiles(t *testing.T) {
	cases := []struct {
		file   string
		ftype  FileType
		counts map[Type]int
	}{
		{"gostd-13m-bf16.gguf", FileMostlyBF16, map[Type]int{BF16: 58, F32: 77}},
		{"gostd-13m-q8_0.gguf", FileMostlyQ8_0, map[Type]int{Q8_0: 51, F16: 7, F32: 77}},
		{"gostd-13m-q4_0.gguf", FileMostlyQ4_0, map[Type]int{Q4_0: 50, Q6_K: 1, F16: 7, F32: 77}},
		{"gostd-13m-q4_k_m.gguf", FileMostlyQ4_K_M, map[Type]int{Q4_K: 45, Q6_K: 6, F16: 7, F32: 77}},
	}
	for _, c := range cases {
		f, err := Open(testutil.Shared(t, filepath.Join("gguf", c.file)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if f.Version() != 3 || f.Alignment() != 32 || f.Len() != 135 {
			t.Errorf("%s: version %d, alignment %d, %d tensors", c.file, f.Version(), f.Alignment(), f.Len())
		}
		ft, err := f.Uint32(FileTypeKey)
		if err != nil || FileType(ft) != c.ftype {
			t.Errorf("%s: file type %v (%v), want %v", c.file, FileType(ft), err, c.ftype)
		}
		counts := map[Type]int{}
		for _, info := range f.Tensors() {
			counts[info.Type]++
		}
		if !reflect.DeepEqual(counts, c.counts) {
			t.Errorf("%s: tensor types %v, want %v", c.file, counts, c.counts)
		}
		for key, want := range map[string]int64{
			"jamba.block_count": 8, "jamba.context_length": 8192, "jamba.embedding_length": 256,
			"jamba.feed_forward_length": 512, "jamba.attention.head_count": 8, "jamba.ssm.conv_kernel": 4,
			"jamba.ssm.inner_size": 512, "jamba.ssm.state_size": 16, "jamba.ssm.time_step_rank": 16,
			"jamba.expert_count": 4, "jamba.expert_used_count": 2, "tokenizer.ggml.bos_token_id": 1,
			"tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.padding_token_id": 0,
		} {
			if got, err := f.Int(key); err != nil || got != want {
				t.Errorf("%s: %s = %d (%v), want %d", c.file, key, got, err, want)
			}
		}
		if arch, err := f.String("general.architecture"); err != nil || arch != "jamba" {
			t.Errorf("%s: architecture %q (%v)", c.file, arch, err)
		}
		if kv, err := f.Ints("jamba.attention.head_count_kv"); err != nil || !reflect.DeepEqual(kv, []int64{0, 0, 0, 0, 2, 0, 0, 0}) {
			t.Errorf("%s: head_count_kv %v (%v)", c.file, kv, err)
		}
		if kv, err := f.PerLayer("jamba.attention.head_count_kv", 8); err != nil || !reflect.DeepEqual(kv, []int64{0, 0, 0, 0, 2, 0, 0, 0}) {
			t.Errorf("%s: head_count_kv per layer %v (%v)", c.file, kv, err)
		}
		if h, err := f.PerLayer("jamba.attention.head_count", 3); err != nil || !reflect.DeepEqual(h, []int64{8, 8, 8}) {
			t.Errorf("%s: head_count per layer %v (%v)", c.file, h, err)
		}
		if _, err := f.PerLayer("jamba.attention.head_count_kv", 7); err == nil || err.Error() != "gguf: "+f.Name()+`: key "jamba.attention.head_count_kv": invalid value: 8 elements for 7 layers` {
			t.Errorf("per-layer length mismatch: %v", err)
		}
		if eps, err := f.Float("jamba.attention.layer_norm_rms_epsilon"); err != nil || float32(eps) != 1e-6 {
			t.Errorf("%s: rms epsilon %g (%v)", c.file, eps, err)
		}
		if b, err := f.Bool("tokenizer.ggml.add_bos_token"); err != nil || !b {
			t.Errorf("%s: add_bos_token %v (%v)", c.file, b, err)
		}
		if b, err := f.Bool("tokenizer.ggml.add_space_prefix"); err != nil || b {
			t.Errorf("%s: add_space_prefix %v (%v)", c.file, b, err)
		}
		toks, err := f.Strings("tokenizer.ggml.tokens")
		if err != nil || len(toks) != 4096 || toks[1] != "<|startoftext|>" || toks[4] != "<0x00>" || toks[259] != "<0xFF>" {
			t.Errorf("%s: %d tokens (%v)", c.file, len(toks), err)
		}
		scores, err := f.Float32s("tokenizer.ggml.scores")
		if err != nil || len(scores) != 4096 || scores[1000] != -1000 {
			t.Errorf("%s: %d scores (%v)", c.file, len(scores), err)
		}
		types, err := f.Ints("tokenizer.ggml.token_type")
		if err != nil || len(types) != 4096 || types[0] != 3 || types[4] != 6 || types[300] != 1 {
			t.Errorf("%s: token types %v (%v)", c.file, types[:8], err)
		}
		// Getters name the key on a type mismatch or a missing key.
		if _, err := f.String("jamba.block_count"); err == nil || err.Error() != "gguf: "+f.Name()+`: key "jamba.block_count": invalid value type: u32, want string` {
			t.Errorf("String of a u32: %v", err)
		}
		if _, err := f.Int("no.such.key"); err == nil || err.Error() != "gguf: "+f.Name()+`: key "no.such.key": not found` {
			t.Errorf("missing key: %v", err)
		}
		info, ok := f.Info("blk.1.ffn_gate_exps.weight")
		if !ok || !reflect.DeepEqual(info.Dims, []int64{256, 512, 4}) || !reflect.DeepEqual(info.Shape(), []int64{4, 512, 256}) || info.RowBytes() != info.Type.RowBytes(256) {
			t.Errorf("%s: ffn_gate_exps %+v", c.file, info)
		}
	}
}

// TestFixtureDequantization dequantizes every tensor of the fixture GGUFs
// and compares the float32 bytes with ggml's: testdata/fixture-dequant.sha256
// lists, per file and tensor, the SHA-256 of the little-endian float32
// values that llama.cpp's gguf_init_from_file and ggml's to_float (of the
// release bundled in node-llama-cpp 3.22.1) give for that tensor.
func TestFixtureDequantization(t *testing.T) {
	lines, err := os.ReadFile("testdata/fixture-dequant.sha256")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	checked := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("bad line %q", line)
		}
		file, name, want := fields[0], fields[1], fields[2]
		f := files[file]
		if f == nil {
			if f, err = Open(testutil.Shared(t, filepath.Join("gguf", file))); err != nil {
				t.Fatal(err)
			}
			files[file] = f
		}
		v, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != want {
			info, _ := f.Info(name)
			t.Errorf("%s: %s (%s): dequantized values differ from ggml's", file, name, info.Type)
		}
		info, _ := f.Info(name)
		checked[info.Type.String()]++
	}
	if len(files) != 4 || checked["Q4_K"] != 45 || checked["Q6_K"] != 7 || checked["Q8_0"] != 51 || checked["Q4_0"] != 50 || checked["BF16"] != 58 || checked["F16"] != 21 {
		t.Errorf("checked %d files, tensors per type %v", len(files), checked)
	}
}
