// Package demo embeds the small model that `jamba run` uses when no --model
// is given, so that an installed binary works without any download.
package demo

import "embed"

// Name is the folder name of the embedded demo model.
const Name = "hf-gostd-13m"

// FS holds the demo checkpoint under Name/: config.json,
// generation_config.json, model.safetensors and tokenizer.json.
//
//go:embed hf-gostd-13m
var FS embed.FS
