package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/tokenizer"
)

// loadTokenizer loads the tokenizer of the model in dir (tokenizer.json,
// with tokenizer_config.json when present), or the demo model's when dir is
// empty.
func loadTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	if isGGUF(dir) {
		return ggufTokenizer(dir)
	}
	if p := filepath.Join(dir, tokenizerGGUF); dir != "" && !fileExists(filepath.Join(dir, "tokenizer.json")) && fileExists(p) {
		return ggufTokenizer(p) // a folder converted from a GGUF file
	}
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
			return nil, fmt.Errorf("%s has no tokenizer.json: pass token ids with --ids instead", dir)
		}
	}
	return openTokenizer(dir)
}
