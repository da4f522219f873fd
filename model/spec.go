package model

import "fmt"

// TensorSpec is the name and shape of one checkpoint tensor.
type TensorSpec struct {
	Name  string
	Shape []int
}

// Spec lists every tensor a checkpoint of this config holds, under the
// on-disk Hugging Face names (experts stored one by one), in a stable order.
// It is the single source of truth for loading, initialising and inspecting.
func (c *Config) Spec() []TensorSpec {
	H, V, I := c.HiddenSize, c.VocabSize, c.IntermediateSize
	hd := c.HeadDimension()
	Di, N, Kc, R := c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
	var s []TensorSpec
	add := func(name string, shape ...int) { s = append(s, TensorSpec{name, shape}) }
	add("model.embed_tokens.weight", V, H)
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", H)
		add(p+"pre_ff_layernorm.weight", H)
		switch c.Mixer(i) {
		case Attention:
			add(p+"self_attn.q_proj.weight", c.NumAttentionHeads*hd, H)
			add(p+"self_attn.k_proj.weight", c.NumKeyValueHeads*hd, H)
			add(p+"self_attn.v_proj.weight", c.NumKeyValueHeads*hd, H)
			add(p+"self_attn.o_proj.weight", H, c.NumAttentionHeads*hd)
		case Mamba:
			m := p + "mamba."
			add(m+"in_proj.weight", 2*Di, H)
			if c.MambaProjBias {
				add(m+"in_proj.bias", 2*Di)
			}
			add(m+"conv1d.weight", Di, 1, Kc)
			if c.MambaConvBias {
				add(m+"conv1d.bias", Di)
			}
			add(m+"x_proj.weight", R+2*N, Di)
			if c.MambaInnerLayernorms {
				add(m+"dt_layernorm.weight", R)
				add(m+"b_layernorm.weight", N)
				add(m+"c_layernorm.weight", N)
			}
			add(m+"dt_proj.weight", Di, R)
			add(m+"dt_proj.bias", Di)
			add(m+"A_log", Di, N)
			add(m+"D", Di)
			add(m+"out_proj.weight", H, Di)
			if c.MambaProjBias {
				add(m+"out_proj.bias", H)
			}
		}
		switch c.FFN(i) {
		case Dense:
			f := p + "feed_forward."
			add(f+"gate_proj.weight", I, H)
			add(f+"up_proj.weight", I, H)
			add(f+"down_proj.weight", H, I)
		case MoE:
			f := p + "feed_forward."
			add(f+"router.weight", c.NumExperts, H)
			for j := 0; j < c.NumExperts; j++ {
				e := fmt.Sprintf("%sexperts.%d.", f, j)
				add(e+"gate_proj.weight", I, H)
				add(e+"up_proj.weight", I, H)
				add(e+"down_proj.weight", H, I)
			}
		}
	}
	add("model.final_layernorm.weight", H)
	if !c.TieWordEmbeddings {
		add("lm_head.weight", V, H)
	}
	return s
}

// ParamCount is the number of parameters of the config: total, and active per
// token (every weight read for one token except the embedding table: all
// non-expert weights, the top-k experts of each MoE layer, routers and the LM
// head, which for tied embeddings is the embedding matrix itself).
func (c *Config) ParamCount() (total, active int64) {
	H, I := int64(c.HiddenSize), int64(c.IntermediateSize)
	expert := 3 * H * I
	for _, t := range c.Spec() {
		n := int64(1)
		for _, d := range t.Shape {
			n *= int64(d)
		}
		total += n
	}
	active = total - int64(c.VocabSize)*H // the embedding lookup reads one row
	if c.TieWordEmbeddings {
		active += int64(c.VocabSize) * H // the LM head reads the whole table
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		if c.FFN(i) == MoE {
			active -= int64(c.NumExperts-c.NumExpertsPerTok) * expert
		}
	}
	return total, active
}
