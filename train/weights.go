package train

import (
	"fmt"

	"github.com/jamba-go/jamba/model"
)

// weights are named views of one flat slice in the Params layout: the
// parameters themselves, or their gradients.
type weights struct {
	embed, finalNorm, lmHead []float32 // lmHead aliases embed when tied
	layers                   []layerWeights
}

type layerWeights struct {
	inNorm, ffNorm []float32

	// attention
	q, k, v, o []float32

	// Mamba
	inProj, inBias, convW, convB, xProj []float32
	dtNorm, bNorm, cNorm                []float32 // nil without inner norms
	dtProj, dtBias, aLog, d             []float32
	outProj, outBias                    []float32

	// feed-forward
	mlp     mlpWeights
	router  []float32
	experts []mlpWeights
}

type mlpWeights struct {
	gate, up, down []float32
}

// bindWeights cuts buf (in p's layout) into named views.
func bindWeights(p *Params, buf []float32) weights {
	c := p.Config
	get := func(name string) []float32 {
		if _, ok := p.Lookup(name); !ok {
			return nil
		}
		return p.View(buf, name)
	}
	w := weights{embed: get("model.embed_tokens.weight"), finalNorm: get("model.final_layernorm.weight")}
	if c.TieWordEmbeddings {
		w.lmHead = w.embed
	} else {
		w.lmHead = get("lm_head.weight")
	}
	w.layers = make([]layerWeights, c.NumHiddenLayers)
	for i := range w.layers {
		pre := fmt.Sprintf("model.layers.%d.", i)
		l := &w.layers[i]
		l.inNorm = get(pre + "input_layernorm.weight")
		l.ffNorm = get(pre + "pre_ff_layernorm.weight")
		switch c.Mixer(i) {
		case model.Attention:
			a := pre + "self_attn."
			l.q, l.k, l.v, l.o = get(a+"q_proj.weight"), get(a+"k_proj.weight"), get(a+"v_proj.weight"), get(a+"o_proj.weight")
		case model.Mamba:
			m := pre + "mamba."
			l.inProj, l.inBias = get(m+"in_proj.weight"), get(m+"in_proj.bias")
			l.convW, l.convB = get(m+"conv1d.weight"), get(m+"conv1d.bias")
			l.xProj = get(m + "x_proj.weight")
			l.dtNorm, l.bNorm, l.cNorm = get(m+"dt_layernorm.weight"), get(m+"b_layernorm.weight"), get(m+"c_layernorm.weight")
			l.dtProj, l.dtBias = get(m+"dt_proj.weight"), get(m+"dt_proj.bias")
			l.aLog, l.d = get(m+"A_log"), get(m+"D")
			l.outProj, l.outBias = get(m+"out_proj.weight"), get(m+"out_proj.bias")
		}
		f := pre + "feed_forward."
		switch c.FFN(i) {
		case model.Dense:
			l.mlp = mlpWeights{get(f + "gate_proj.weight"), get(f + "up_proj.weight"), get(f + "down_proj.weight")}
		case model.MoE:
			l.router = get(f + "router.weight")
			l.experts = make([]mlpWeights, c.NumExperts)
			for j := range l.experts {
				e := fmt.Sprintf("%sexperts.%d.", f, j)
				l.experts[j] = mlpWeights{get(e + "gate_proj.weight"), get(e + "up_proj.weight"), get(e + "down_proj.weight")}
			}
		}
	}
	return w
}
