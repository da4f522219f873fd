// Package demo embeds the small model that `jamba run` uses when no --model
// is given, so that an installed binary works without any download.
//
// Only commands and tests import it: the packages below (model, engine,
// server, train) load any checkpoint and know nothing of this one. A build
// with the tag nodemo leaves the checkpoint out (File finds nothing, Load
// and Tokenizer say so).
package demo

import (
	"errors"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
)

// Name is the name of the embedded demo model.
const Name = "jamba-gostd-4m"

// errNoDemo is returned by a build without the demo checkpoint.
var errNoDemo = errors.New("this build has no demo model (built with -tags nodemo): pass --model")

// Load returns the demo model; its weights alias the binary's read-only
// data.
func Load(opts model.Options) (*model.Model, error) {
	if _, ok := File("config.json"); !ok {
		return nil, errNoDemo
	}
	return model.LoadFiles("demo model "+Name, File, opts)
}

// Tokenizer returns the demo model's tokenizer.
func Tokenizer() (*tokenizer.Tokenizer, error) {
	data, ok := File("tokenizer.json")
	if !ok {
		return nil, errNoDemo
	}
	return tokenizer.LoadBytes(data, nil)
}
