// Package demo embeds the small model that `jamba run` uses when no --model
// is given, so that an installed binary works without any download.
//
// Only commands and tests import it: the packages below (model, engine,
// server, train) load any checkpoint and know nothing of this one.
package demo

import (
	_ "embed" // for the go:embed directives below
	"unsafe"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
)

// Name is the name of the embedded demo model.
const Name = "jamba-gostd-4m"

// The checkpoint files are embedded as strings so that their bytes can be
// handed out without a copy: they live in the binary's read-only data.
var (
	//go:embed jamba-gostd-4m/config.json
	configJSON string
	//go:embed jamba-gostd-4m/generation_config.json
	generationConfigJSON string
	//go:embed jamba-gostd-4m/model.safetensors
	modelSafetensors string
	//go:embed jamba-gostd-4m/tokenizer.json
	tokenizerJSON string
)

var files = map[string]string{
	"config.json":            configJSON,
	"generation_config.json": generationConfigJSON,
	"model.safetensors":      modelSafetensors,
	"tokenizer.json":         tokenizerJSON,
}

// File returns the bytes of one file of the demo checkpoint and whether it
// exists. The slice aliases read-only memory: callers must not modify it.
func File(name string) ([]byte, bool) {
	s, ok := files[name]
	if !ok {
		return nil, false
	}
	return unsafe.Slice(unsafe.StringData(s), len(s)), true
}

// Load returns the demo model; its weights alias the binary's read-only
// data.
func Load(opts model.Options) (*model.Model, error) {
	return model.LoadFiles("demo model "+Name, File, opts)
}

// Tokenizer returns the demo model's tokenizer.
func Tokenizer() (*tokenizer.Tokenizer, error) {
	data, _ := File("tokenizer.json")
	return tokenizer.LoadBytes(data, nil)
}
