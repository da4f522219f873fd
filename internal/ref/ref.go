// Package ref is the float64 Jamba forward pass that the tests of every
// fast path compare with: plain loops written from the architecture notes
// (docs/ARCHITECTURE.md names them), sharing no code with model or train.
// It reads the configuration from config.json's keys and the weights by
// their Hugging Face tensor names, so that the tests of the inference
// engine (model), of training (train) and of any other backend feed it the
// same way.
//
// It is slow (every product is a scalar loop) and meant for test-sized
// models only.
package ref

import (
	"encoding/json"
	"fmt"
	"math"
)

// Config is the part of a JambaConfig the forward pass reads, decoded from
// config.json with all values resolved (as transformers and
// model.Config.MarshalJSON write them: mamba_dt_rank a number).
type Config struct {
	VocabSize         int     `json:"vocab_size"`
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	NumHiddenLayers   int     `json:"num_hidden_layers"`
	NumAttentionHeads int     `json:"num_attention_heads"`
	NumKeyValueHeads  int     `json:"num_key_value_heads"`
	HeadDim           int     `json:"head_dim"` // 0: hidden_size / num_attention_heads
	HiddenAct         string  `json:"hidden_act"`
	RMSNormEps        float64 `json:"rms_norm_eps"`
	TieWordEmbeddings bool    `json:"tie_word_embeddings"`
	NumExperts        int     `json:"num_experts"`
	NumExpertsPerTok  int     `json:"num_experts_per_tok"`
	ExpertLayerPeriod int     `json:"expert_layer_period"`
	ExpertLayerOffset int     `json:"expert_layer_offset"`
	AttnLayerPeriod   int     `json:"attn_layer_period"`
	AttnLayerOffset   int     `json:"attn_layer_offset"`
	MambaDState       int     `json:"mamba_d_state"`
	MambaDConv        int     `json:"mamba_d_conv"`
	MambaExpand       int     `json:"mamba_expand"`
	MambaDtRank       int     `json:"mamba_dt_rank"`
}

// ParseConfig decodes a config.json with resolved values.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("ref: config: %w", err)
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	return &c, nil
}

// ConfigOf converts a config that marshals to config.json's keys (as
// *model.Config does) into a Config.
func ConfigOf(cfg json.Marshaler) (*Config, error) {
	data, err := cfg.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("ref: config: %w", err)
	}
	return ParseConfig(data)
}

// Weights returns the values of the named tensor in row-major order (a
// matrix [out, in] as stored), or nil when the checkpoint has no such
// tensor (an optional bias or norm).
type Weights func(name string) []float64

// Forward returns the logits [T][V] of every position of ids.
func Forward(c *Config, w Weights, ids []int) [][]float64 {
	h := forward(c, w, ids, nil, nil)
	out := make([][]float64, len(h))
	for t := range h {
		out[t] = logits(c, w, h[t])
	}
	return out
}

// Loss returns the mean next-token cross-entropy over all rows and the MoE
// load-balancing loss E·Σ_e f_e·P_e pooled over every MoE layer and token
// (f_e: the share of top-k choices, P_e: the mean router probability), as
// transformers computes them for unpadded rows. When padRow is not nil,
// the embedding lookup of the config's padding id pad reads padRow instead
// of the embedding table, so that perturbing that row of the table shows
// only the gradient transformers gives it.
func Loss(c *Config, w Weights, rows [][]int, pad int, padRow []float64) (ce, aux float64) {
	return MaskedLoss(c, w, rows, nil, pad, padRow)
}

// MaskedLoss is Loss with the cross-entropy restricted to the targets that
// mask chooses (mask[r][t]: token t of row r, predicted from position t−1;
// nil: all): the mean over those only, 0 when there are none. The
// load-balancing loss is over every token, as before.
func MaskedLoss(c *Config, w Weights, rows [][]int, mask [][]bool, pad int, padRow []float64) (ce, aux float64) {
	st := &moeStats{count: make([]float64, c.NumExperts), psum: make([]float64, c.NumExperts)}
	var terms int
	for r, ids := range rows {
		var embed func(id int) []float64
		if padRow != nil {
			embed = func(id int) []float64 {
				if id == pad {
					return padRow
				}
				return nil
			}
		}
		h := forward(c, w, ids, embed, st)
		for t := 0; t+1 < len(ids); t++ {
			if mask != nil && !mask[r][t+1] {
				continue
			}
			lg := logits(c, w, h[t])
			mx := math.Inf(-1)
			for _, v := range lg {
				mx = math.Max(mx, v)
			}
			var s float64
			for _, v := range lg {
				s += math.Exp(v - mx)
			}
			ce += mx + math.Log(s) - lg[ids[t+1]]
			terms++
		}
	}
	if st.rows > 0 {
		n := float64(st.rows)
		for e := range st.count {
			aux += st.count[e] / n * st.psum[e] / n
		}
		aux *= float64(c.NumExperts)
	}
	return ce / float64(max(terms, 1)), aux
}

// moeStats gathers the router's choices for the load-balancing loss.
type moeStats struct {
	count []float64 // top-k choices per expert
	psum  []float64 // summed router probabilities per expert
	rows  int       // tokens routed, summed over MoE layers
}

// logits applies the LM head to a final-normed hidden state.
func logits(c *Config, w Weights, h []float64) []float64 {
	head := w("lm_head.weight")
	if c.TieWordEmbeddings || head == nil {
		head = w("model.embed_tokens.weight")
	}
	return linear(head, h, c.VocabSize)
}

// forward returns the final-normed hidden states [T][H]. embed, when not
// nil, may replace an embedding row (nil: the table's).
func forward(c *Config, w Weights, ids []int, embed func(id int) []float64, st *moeStats) [][]float64 {
	H := c.HiddenSize
	T := len(ids)
	table := w("model.embed_tokens.weight")
	h := make([][]float64, T)
	for t, id := range ids {
		row := table[id*H : (id+1)*H]
		if embed != nil {
			if r := embed(id); r != nil {
				row = r
			}
		}
		h[t] = append([]float64(nil), row...)
	}
	for li := 0; li < c.NumHiddenLayers; li++ {
		pre := fmt.Sprintf("model.layers.%d.", li)
		x := make([][]float64, T)
		for t := range h {
			x[t] = rmsNorm(h[t], w(pre+"input_layernorm.weight"), c.RMSNormEps)
		}
		var mix [][]float64
		if li%c.AttnLayerPeriod == c.AttnLayerOffset {
			mix = attention(c, w, pre+"self_attn.", x)
		} else {
			mix = mamba(c, w, pre+"mamba.", x)
		}
		for t := range h {
			add(h[t], mix[t])
			xn := rmsNorm(h[t], w(pre+"pre_ff_layernorm.weight"), c.RMSNormEps)
			if li%c.ExpertLayerPeriod == c.ExpertLayerOffset && c.NumExperts > 1 {
				add(h[t], moe(c, w, pre+"feed_forward.", xn, st))
			} else {
				add(h[t], mlp(c, w, pre+"feed_forward.", xn))
			}
		}
	}
	for t := range h {
		h[t] = rmsNorm(h[t], w("model.final_layernorm.weight"), c.RMSNormEps)
	}
	return h
}

// attention is causal grouped-query attention without positional encoding
// (Jamba's attention layers have none): o_proj(softmax(q·kᵀ/√d)·v).
func attention(c *Config, w Weights, pre string, x [][]float64) [][]float64 {
	nH, nKV, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	T := len(x)
	q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
	for t := range x {
		q[t] = linear(w(pre+"q_proj.weight"), x[t], nH*hd)
		k[t] = linear(w(pre+"k_proj.weight"), x[t], nKV*hd)
		v[t] = linear(w(pre+"v_proj.weight"), x[t], nKV*hd)
	}
	out := make([][]float64, T)
	for t := range x {
		o := make([]float64, nH*hd)
		for hh := 0; hh < nH; hh++ {
			g := hh / (nH / nKV)
			s := make([]float64, t+1)
			for j := 0; j <= t; j++ {
				for d := 0; d < hd; d++ {
					s[j] += q[t][hh*hd+d] * k[j][g*hd+d]
				}
				s[j] /= math.Sqrt(float64(hd))
			}
			p := softmax(s)
			for j := range p {
				for d := 0; d < hd; d++ {
					o[hh*hd+d] += p[j] * v[j][g*hd+d]
				}
			}
		}
		out[t] = linear(w(pre+"o_proj.weight"), o, c.HiddenSize)
	}
	return out
}

// mamba is the Mamba-1 mixer: in_proj to x and z, the causal depthwise
// conv and activation on x, x_proj to dt, B and C (RMS-normed when the
// checkpoint has the inner norms), dt_proj and softplus, the selective
// scan h = exp(Δ·A)·h + Δ·B·x, y = C·h + D·x, gated by silu(z), out_proj.
func mamba(c *Config, w Weights, pre string, u [][]float64) [][]float64 {
	H, Di, N, Kc, R := c.HiddenSize, c.MambaExpand*c.HiddenSize, c.MambaDState, c.MambaDConv, c.MambaDtRank
	T := len(u)
	xs, zs := make([][]float64, T), make([][]float64, T)
	for t := range u {
		xz := linear(w(pre+"in_proj.weight"), u[t], 2*Di)
		if b := w(pre + "in_proj.bias"); b != nil {
			add(xz, b)
		}
		xs[t], zs[t] = xz[:Di], xz[Di:]
	}
	convW, convB := w(pre+"conv1d.weight"), w(pre+"conv1d.bias")
	aLog, D, dtBias := w(pre+"A_log"), w(pre+"D"), w(pre+"dt_proj.bias")
	A := make([]float64, Di*N) // A = −exp(A_log)
	for i, v := range aLog {
		A[i] = -math.Exp(v)
	}
	state := make([]float64, Di*N)
	out := make([][]float64, T)
	for t := range u {
		xc := make([]float64, Di)
		for ch := range xc {
			var acc float64
			if convB != nil {
				acc = convB[ch]
			}
			for j := 0; j < Kc; j++ {
				if src := t - (Kc - 1) + j; src >= 0 {
					acc += convW[ch*Kc+j] * xs[src][ch]
				}
			}
			xc[ch] = activation(c.HiddenAct, acc)
		}
		dbc := linear(w(pre+"x_proj.weight"), xc, R+2*N)
		dt, B, C := dbc[:R], dbc[R:R+N], dbc[R+N:]
		if nw := w(pre + "dt_layernorm.weight"); nw != nil {
			dt = rmsNorm(dt, nw, c.RMSNormEps)
			B = rmsNorm(B, w(pre+"b_layernorm.weight"), c.RMSNormEps)
			C = rmsNorm(C, w(pre+"c_layernorm.weight"), c.RMSNormEps)
		}
		delta := linear(w(pre+"dt_proj.weight"), dt, Di)
		y := make([]float64, Di)
		for ch := range y {
			d := delta[ch] + dtBias[ch]
			if d <= 20 { // softplus, linear above 20 as in torch
				d = math.Log1p(math.Exp(d))
			}
			var acc float64
			for n := 0; n < N; n++ {
				state[ch*N+n] = math.Exp(d*A[ch*N+n])*state[ch*N+n] + d*B[n]*xc[ch]
				acc += state[ch*N+n] * C[n]
			}
			z := zs[t][ch]
			y[ch] = (acc + D[ch]*xc[ch]) * z / (1 + math.Exp(-z))
		}
		out[t] = linear(w(pre+"out_proj.weight"), y, H)
		if b := w(pre + "out_proj.bias"); b != nil {
			add(out[t], b)
		}
	}
	return out
}

// mlp is the gated MLP down(act(gate·x) ⊙ up·x).
func mlp(c *Config, w Weights, pre string, x []float64) []float64 {
	I := c.IntermediateSize
	g := linear(w(pre+"gate_proj.weight"), x, I)
	u := linear(w(pre+"up_proj.weight"), x, I)
	for i := range g {
		g[i] = activation(c.HiddenAct, g[i]) * u[i]
	}
	return linear(w(pre+"down_proj.weight"), g, c.HiddenSize)
}

// moe routes x to the top-k experts of the router's softmax (ties to the
// lower index) and sums their outputs weighted by their probabilities
// (not renormalised, as in Jamba).
func moe(c *Config, w Weights, pre string, x []float64, st *moeStats) []float64 {
	p := softmax(linear(w(pre+"router.weight"), x, c.NumExperts))
	taken := make([]bool, len(p))
	out := make([]float64, c.HiddenSize)
	for k := 0; k < c.NumExpertsPerTok; k++ {
		best := -1
		for e := range p {
			if !taken[e] && (best < 0 || p[e] > p[best]) {
				best = e
			}
		}
		taken[best] = true
		y := mlp(c, w, fmt.Sprintf("%sexperts.%d.", pre, best), x)
		for i := range out {
			out[i] += p[best] * y[i]
		}
		if st != nil {
			st.count[best]++
		}
	}
	if st != nil {
		add(st.psum, p)
		st.rows++
	}
	return out
}

// activation is hidden_act in float64, as transformers' ACT2FN defines it.
func activation(name string, x float64) float64 {
	switch name {
	case "relu":
		return math.Max(x, 0)
	case "gelu":
		return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
	case "gelu_new", "gelu_pytorch_tanh", "gelu_fast":
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	case "silu", "swish":
		return x / (1 + math.Exp(-x))
	}
	panic("ref: unsupported hidden_act " + name)
}

// rmsNorm returns w ⊙ x / sqrt(mean(x²) + eps).
func rmsNorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = w[i] * v * r
	}
	return y
}

// linear returns W·x for W [out, len(x)].
func linear(w, x []float64, out int) []float64 {
	in := len(x)
	y := make([]float64, out)
	for o := range y {
		var s float64
		for i, v := range x {
			s += w[o*in+i] * v
		}
		y[o] = s
	}
	return y
}

func softmax(x []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, v)
	}
	var s float64
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = math.Exp(v - mx)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func add(dst, src []float64) {
	for i := range dst {
		dst[i] += src[i]
	}
}
