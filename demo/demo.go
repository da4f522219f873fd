//go:build !nodemo

package demo

import (
	_ "embed" // for the go:embed directives below
	"unsafe"
)

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

// File returns the bytes of one file of the demo checkpoint and whether it
// exists. The slice aliases read-only memory: callers must not modify it.
func File(name string) ([]byte, bool) {
	// A switch rather than a package-level map: binaries that never call
	// File (the GPU test binary, say) then leave the weights out.
	var s string
	switch name {
	case "config.json":
		s = configJSON
	case "generation_config.json":
		s = generationConfigJSON
	case "model.safetensors":
		s = modelSafetensors
	case "tokenizer.json":
		s = tokenizerJSON
	default:
		return nil, false
	}
	return unsafe.Slice(unsafe.StringData(s), len(s)), true
}
