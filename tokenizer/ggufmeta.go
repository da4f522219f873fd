package tokenizer

import (
	"fmt"

	"github.com/jamba-go/jamba/gguf"
)

// VocabFromGGUF reads the tokenizer.ggml.* metadata of a GGUF file.
func VocabFromGGUF(f *gguf.File) (GGUFVocab, error) {
	v := GGUFVocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	var err error
	if v.Model, err = f.String("tokenizer.ggml.model"); err != nil {
		return v, err
	}
	if f.Has("tokenizer.ggml.pre") {
		if v.Pre, err = f.String("tokenizer.ggml.pre"); err != nil {
			return v, err
		}
	}
	if v.Model == "none" || v.Model == "no_vocab" {
		return v, nil
	}
	if v.Tokens, err = f.Strings("tokenizer.ggml.tokens"); err != nil {
		return v, err
	}
	if f.Has("tokenizer.ggml.scores") {
		if v.Scores, err = f.Float32s("tokenizer.ggml.scores"); err != nil {
			return v, err
		}
	}
	if f.Has("tokenizer.ggml.token_type") {
		types, err := f.Ints("tokenizer.ggml.token_type")
		if err != nil {
			return v, err
		}
		v.Types = make([]int32, len(types))
		for i, x := range types {
			v.Types[i] = int32(max(-1, min(x, 1<<20))) // unknown values read as undefined
		}
	}
	if f.Has("tokenizer.ggml.merges") {
		if v.Merges, err = f.Strings("tokenizer.ggml.merges"); err != nil {
			return v, err
		}
	}
	for key, dst := range map[string]*int{
		"tokenizer.ggml.bos_token_id":     &v.BOS,
		"tokenizer.ggml.eos_token_id":     &v.EOS,
		"tokenizer.ggml.unknown_token_id": &v.UNK,
		"tokenizer.ggml.padding_token_id": &v.PAD,
	} {
		if !f.Has(key) {
			continue
		}
		n, err := f.Uint32(key)
		if err != nil {
			return v, err
		}
		// Out-of-range ids are ignored, as llama.cpp does (the default applies).
		if int64(n) < int64(len(v.Tokens)) {
			*dst = int(n)
		}
	}
	for key, dst := range map[string]**bool{
		"tokenizer.ggml.add_bos_token":    &v.AddBOS,
		"tokenizer.ggml.add_eos_token":    &v.AddEOS,
		"tokenizer.ggml.add_space_prefix": &v.AddSpacePrefix,
	} {
		if !f.Has(key) {
			continue
		}
		b, err := f.Bool(key)
		if err != nil {
			return v, err
		}
		*dst = &b
	}
	return v, nil
}

// LoadGGUF builds the tokenizer of a GGUF file's metadata (see FromGGUF).
// Errors name the file.
func LoadGGUF(f *gguf.File) (*Tokenizer, error) {
	v, err := VocabFromGGUF(f)
	if err != nil {
		return nil, err
	}
	t, err := FromGGUF(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return t, nil
}

// KVs returns the tokenizer.ggml.* key/values of v in the order llama.cpp's
// converter writes them (absent ids and flags left out; a padding id is
// written when set).
func (v GGUFVocab) KVs() []gguf.KV {
	kv := func(k string, x any) gguf.KV { return gguf.KV{Key: k, Value: gguf.ValueOf(x)} }
	out := []gguf.KV{kv("tokenizer.ggml.model", v.Model)}
	if v.Pre != "" {
		out = append(out, kv("tokenizer.ggml.pre", v.Pre))
	}
	out = append(out, kv("tokenizer.ggml.tokens", v.Tokens))
	if v.Scores != nil {
		out = append(out, kv("tokenizer.ggml.scores", v.Scores))
	}
	if v.Types != nil {
		out = append(out, kv("tokenizer.ggml.token_type", v.Types))
	}
	if v.Merges != nil {
		out = append(out, kv("tokenizer.ggml.merges", v.Merges))
	}
	for _, x := range []struct {
		key string
		id  int
	}{{"tokenizer.ggml.bos_token_id", v.BOS}, {"tokenizer.ggml.eos_token_id", v.EOS}, {"tokenizer.ggml.unknown_token_id", v.UNK}, {"tokenizer.ggml.padding_token_id", v.PAD}} {
		if x.id >= 0 {
			out = append(out, kv(x.key, uint32(x.id)))
		}
	}
	for _, x := range []struct {
		key string
		b   *bool
	}{{"tokenizer.ggml.add_bos_token", v.AddBOS}, {"tokenizer.ggml.add_eos_token", v.AddEOS}, {"tokenizer.ggml.add_space_prefix", v.AddSpacePrefix}} {
		if x.b != nil {
			out = append(out, kv(x.key, *x.b))
		}
	}
	return out
}
