// Package study looks inside Jamba models and compares hybrid layouts:
// attention maps and their induction and previous-token scores, the memory
// of the Mamba layers' state, the importance of each layer's mixer, the
// synthetic in-context tasks of study/tasks, and an ablation driver that
// trains small models of several layouts with the train package and
// evaluates them on those tasks.
//
// Everything reads a model through model.Load and its forward pass (the
// probes of model.Probe); nothing here re-implements the forward.
package study

import (
	"fmt"
	"strings"

	"github.com/jamba-go/jamba/model"
)

// Variant is one model layout of an ablation.
type Variant struct {
	Name string
	// Attention layers are those i with i % AttnPeriod == AttnOffset; a
	// period above the layer count with offset = period−1 gives none.
	AttnPeriod, AttnOffset int
	// MoE puts a mixture of experts on every other layer (odd layers, as
	// Jamba does).
	MoE bool
	// NoInnerNorms drops the dt/B/C RMSNorms of the Mamba layers.
	NoInnerNorms bool
}

// Variants returns the default ablation set for models of layers layers
// (at least 8, so that 1:7 exists): pure attention, pure Mamba, and
// attention:Mamba ratios 1:1, 1:3 and 1:7, each dense and with MoE, and
// 1:7 without the dt/B/C norms.
func Variants(layers int) []Variant {
	base := []Variant{
		{Name: "attention", AttnPeriod: 1, AttnOffset: 0},
		{Name: "mamba", AttnPeriod: layers + 1, AttnOffset: layers},
		{Name: "1:1", AttnPeriod: 2, AttnOffset: 1},
		{Name: "1:3", AttnPeriod: 4, AttnOffset: 2},
		{Name: "1:7", AttnPeriod: 8, AttnOffset: 4},
	}
	var out []Variant
	out = append(out, base...)
	for _, v := range base {
		v.Name += "+moe"
		v.MoE = true
		out = append(out, v)
	}
	out = append(out, Variant{Name: "1:7-nonorm", AttnPeriod: 8, AttnOffset: 4, NoInnerNorms: true})
	return out
}

// SelectVariants returns the variants of all named in a comma-separated
// list ("" or "all": all of them).
func SelectVariants(all []Variant, list string) ([]Variant, error) {
	if list == "" || list == "all" {
		return all, nil
	}
	var out []Variant
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, v := range all {
			if v.Name == name {
				out = append(out, v)
				found = true
			}
		}
		if !found {
			var names []string
			for _, v := range all {
				names = append(names, v.Name)
			}
			return nil, fmt.Errorf("study: unknown variant %q (have %s)", name, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// Shape is the size of the models of an ablation.
type Shape struct {
	Vocab, Hidden, Layers, Heads int
	// Intermediate is the MLP width of the reference layout (1:7, dense);
	// every other variant's is chosen to match its count of active
	// parameters.
	Intermediate int
	DState       int
	Experts      int // experts of the MoE variants (top-2)
	// TieEmbeddings shares the embedding table with the LM head.
	TieEmbeddings bool
	// InitRange is the standard deviation of the initial weights (0: the
	// config's default, Hugging Face's 0.02).
	InitRange float64
}

// Config returns the config of variant v with MLP width inter.
func (s Shape) config(v Variant, inter int) *model.Config {
	c := model.DefaultConfig()
	c.VocabSize = s.Vocab
	c.HiddenSize = s.Hidden
	c.IntermediateSize = inter
	c.NumHiddenLayers = s.Layers
	c.NumAttentionHeads = s.Heads
	c.NumKeyValueHeads = s.Heads
	c.AttnLayerPeriod, c.AttnLayerOffset = v.AttnPeriod, v.AttnOffset
	c.MambaDState = s.DState
	c.MambaDtRank = (s.Hidden + 15) / 16
	c.MaxPositionEmbeddings = 4096
	c.NumExperts, c.NumExpertsPerTok = 1, 1
	c.ExpertLayerPeriod, c.ExpertLayerOffset = 2, 1
	if v.MoE {
		c.NumExperts, c.NumExpertsPerTok = s.Experts, 2
	}
	c.MambaInnerLayernorms = !v.NoInnerNorms
	c.UseMambaKernels = false
	c.TieWordEmbeddings = s.TieEmbeddings
	if s.InitRange > 0 {
		c.InitializerRange = s.InitRange
	}
	return c
}

// Config returns the config of variant v: the shape, v's layout, and the
// MLP width that brings its active parameters (per token, the embedding
// table excluded) closest to those of the dense 1:7 layout at
// s.Intermediate.
func (s Shape) Config(v Variant) *model.Config {
	ref := s.config(Variant{AttnPeriod: 8, AttnOffset: 4}, s.Intermediate)
	_, target := ref.ParamCount()
	best, bestDiff := 1, int64(-1)
	for inter := 8; inter <= 8*s.Intermediate; inter += 8 {
		_, a := s.config(v, inter).ParamCount()
		d := a - target
		if d < 0 {
			d = -d
		}
		if bestDiff < 0 || d < bestDiff {
			best, bestDiff = inter, d
		}
	}
	return s.config(v, best)
}
