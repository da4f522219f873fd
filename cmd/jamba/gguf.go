package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/gguf"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
)

// A --model may name a llama.cpp GGUF file instead of a Hugging Face folder:
// the weights, the config, the tokenizer and the chat template all come from
// the one file. The hooks below are what the commands call for it.

// isGGUF reports whether a --model value names a GGUF file.
func isGGUF(path string) bool { return path != "" && model.IsGGUF(path) }

// ggufTokenizer loads the tokenizer of a GGUF file's metadata.
func ggufTokenizer(path string) (*tokenizer.Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return tokenizer.LoadGGUF(f)
}

// ggufTemplate returns the chat template of a GGUF file
// (tokenizer.chat_template; nil when it has none) and the texts of its BOS
// and EOS tokens for the template's bos_token and eos_token.
func ggufTemplate(path string) (*chat.Template, map[string]string, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	special := map[string]string{}
	if toks, err := f.Strings("tokenizer.ggml.tokens"); err == nil {
		for name, key := range map[string]string{"bos_token": "tokenizer.ggml.bos_token_id", "eos_token": "tokenizer.ggml.eos_token_id"} {
			if id, err := f.Int(key); err == nil && id >= 0 && id < int64(len(toks)) {
				special[name] = toks[id]
			}
		}
	}
	if !f.Has("tokenizer.chat_template") {
		return nil, special, nil
	}
	src, err := f.String("tokenizer.chat_template")
	if err != nil {
		return nil, nil, err
	}
	t, err := chat.New(src)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: tokenizer.chat_template: %w", path, err)
	}
	return t, special, nil
}

// ggufInspect is inspect for a GGUF file: the config from its metadata and
// one line per tensor with its ggml type and bits per weight.
func ggufInspect(path string, ctx int, asJSON bool, stdout io.Writer) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg, err := model.ConfigFromGGUF(f)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	n := ctx
	if n <= 0 {
		n = cfg.MaxPositionEmbeddings
	}
	r := buildInspect(cfg, path, n, st.Size())
	type tensorLine struct {
		Name  string  `json:"name"`
		Type  string  `json:"type"`
		Shape []int64 `json:"shape"` // ggml ne order: innermost first
		Bits  float64 `json:"bits_per_weight"`
		Bytes int64   `json:"bytes"`
	}
	var lines []tensorLine
	counts := map[string]int{}
	var weights, bits float64
	for _, t := range f.Tensors() {
		lines = append(lines, tensorLine{t.Name, t.Type.String(), t.Dims, t.Type.BitsPerWeight(), t.Size})
		counts[t.Type.String()]++
		weights += float64(t.NumElements())
		bits += 8 * float64(t.Size)
	}
	r.WeightDType = ggufFileType(f)
	if asJSON {
		return writeJSONLine(stdout, struct {
			inspectReport
			Tensors       []tensorLine `json:"tensors"`
			BitsPerWeight float64      `json:"bits_per_weight"`
		}{r, lines, bits / weights})
	}
	printInspect(stdout, cfg, r)
	fmt.Fprintf(stdout, "\nGGUF v%d, %s, %d tensors, %.2f bits per weight overall:", f.Version(), r.WeightDType, len(lines), bits/weights)
	for _, name := range sortedKeys(counts) {
		fmt.Fprintf(stdout, " %d %s", counts[name], name)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "%-36s %-6s %6s %10s  %s\n", "tensor", "type", "bits", "bytes", "shape (ne)")
	for _, l := range lines {
		dims := make([]string, len(l.Shape))
		for i, d := range l.Shape {
			dims[i] = fmt.Sprint(d)
		}
		fmt.Fprintf(stdout, "%-36s %-6s %6.2f %10d  (%s)\n", l.Name, l.Type, l.Bits, l.Bytes, strings.Join(dims, ", "))
	}
	return nil
}

func ggufFileType(f *gguf.File) string {
	ft, err := f.Uint32(gguf.FileTypeKey)
	if err != nil {
		return "GGUF"
	}
	return gguf.FileType(ft).String()
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// ggufTokenizerSource returns the GGUF file whose tokenizer training uses:
// the --tokenizer or --model .gguf file, or the tokenizer.gguf of a folder
// without tokenizer.json (one converted from a GGUF file); "" for none.
func ggufTokenizerSource(src, tokPath string) string {
	switch {
	case tokPath != "":
		if isGGUF(tokPath) {
			return tokPath
		}
		return ""
	case isGGUF(src):
		return src
	case src != "" && !fileExists(filepath.Join(src, "tokenizer.json")) && fileExists(filepath.Join(src, tokenizerGGUF)):
		return filepath.Join(src, tokenizerGGUF)
	}
	return ""
}

// ggufTokenizerFiles returns the files a checkpoint folder keeps the
// tokenizer of the GGUF file path in: tokenizer.gguf (the file's
// tokenizer.* key/values alone) and, when it has a chat template,
// tokenizer_config.json holding it with the BOS and EOS texts.
func ggufTokenizerFiles(path string) (map[string][]byte, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var kvs []gguf.KV
	for _, kv := range f.KVs() {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			kvs = append(kvs, kv)
		}
	}
	data, err := gguf.Marshal(kvs, nil)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{tokenizerGGUF: data}
	tmpl, special, err := ggufTemplate(path)
	if err != nil {
		return nil, err
	}
	if tmpl != nil {
		cfg := map[string]any{"chat_template": tmpl.Source()}
		for k, v := range special {
			cfg[k] = v
		}
		js, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, err
		}
		files["tokenizer_config.json"] = append(js, '\n')
	}
	return files, nil
}

// openGGUF is openModel for a .gguf file: the weights, and the tokenizer
// of its metadata. Dir is the file itself, where the chat template is read.
func openGGUF(path string, opts model.Options) (*loadedModel, error) {
	m, err := model.LoadGGUF(path, opts)
	if err != nil {
		return nil, err
	}
	l := &loadedModel{Model: m, Name: modelName(path), Dir: path}
	l.tok, l.tokErr = ggufTokenizer(path)
	return l, nil
}
