package main

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/internal/safefile"
	"github.com/jamba-go/jamba/model"
)

// readTokenizerFiles reads the files of tokenizerFiles that go into every
// checkpoint: tokSrc as tokenizer.json and the others from the first of
// dirs that has them; with no tokSrc (the demo model) the embedded files.
func readTokenizerFiles(dirs []string, tokSrc string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, name := range tokenizerFiles {
		switch {
		case tokSrc == "":
			if data, ok := demo.File(name); ok {
				out[name] = data
			}
		case name == "tokenizer.json":
			data, err := safefile.ReadFile(tokSrc, safefile.MaxTokenizer)
			if err != nil {
				return nil, err
			}
			out[name] = data
		default:
			for _, d := range dirs {
				data, err := safefile.ReadFile(filepath.Join(d, name), safefile.MaxTokenizer)
				if err == nil {
					out[name] = data
					break
				}
				if !errors.Is(err, os.ErrNotExist) {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// writeTokenizerFiles writes files into a checkpoint folder, and a
// generation_config.json from the model config's special tokens when
// there is none.
func writeTokenizerFiles(files map[string][]byte, dst string, cfg *model.Config) error {
	for name, data := range files {
		if err := atomicfile.WriteFile(filepath.Join(dst, name), data); err != nil {
			return err
		}
	}
	if _, ok := files["generation_config.json"]; !ok {
		return writeGenerationConfig(dst, cfg)
	}
	return nil
}
