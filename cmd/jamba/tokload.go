package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/tokenizer"
)

// loadTokenizer loads dir/tokenizer.json (with tokenizer_config.json when
// present), or the demo model's tokenizer when dir is empty.
func loadTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	if dir == "" {
		data, _ := demo.File("tokenizer.json")
		return tokenizer.LoadBytes(data, nil)
	}
	path := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s has no tokenizer.json: pass token ids with --ids instead", dir)
	}
	return tokenizer.Load(path)
}
