package train

import (
	"fmt"
	"math"

	"github.com/jamba-go/jamba/model"
)

// refLoss is a plain float64 reference of the training loss, written from
// the architecture notes independently of the engine's code paths: the
// embedding, every decoder layer, the final norm and LM head, the mean
// next-token cross-entropy over all rows, plus router_aux_loss_coef times
// the load-balancing loss. theta is in the layout of p. The lookup of the
// padding id reads padRow (when not nil) instead of theta, so that
// perturbing that row of theta shows only the gradient that transformers
// gives it (none from the lookup, the LM head's part when tied). It returns
// the CE and the aux loss.
func refLoss(p *Params, theta []float64, rows [][]int, padRow []float64) (ce, aux float64) {
	c := p.Config
	H, V, I := c.HiddenSize, c.VocabSize, c.IntermediateSize
	eps := c.RMSNormEps
	get := func(name string) []float64 {
		t, ok := p.Lookup(name)
		if !ok {
			return nil
		}
		return theta[t.Offset : t.Offset+t.Size]
	}
	actName := c.HiddenAct
	act := func(x float64) float64 {
		switch actName {
		case "relu":
			return math.Max(x, 0)
		case "gelu":
			return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
		case "gelu_new", "gelu_pytorch_tanh", "gelu_fast":
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		}
		return x / (1 + math.Exp(-x))
	}
	silu := func(x float64) float64 { return x / (1 + math.Exp(-x)) }
	rms := func(x, w []float64) []float64 {
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
	// lin computes W·x for W [out, in].
	lin := func(w, x []float64, out int) []float64 {
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
	mlp := func(pre string, x []float64) []float64 {
		g := lin(get(pre+"gate_proj.weight"), x, I)
		u := lin(get(pre+"up_proj.weight"), x, I)
		for i := range g {
			g[i] = act(g[i]) * u[i]
		}
		return lin(get(pre+"down_proj.weight"), g, H)
	}
	softmax := func(x []float64) []float64 {
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

	E, K := c.NumExperts, c.NumExpertsPerTok
	count := make([]float64, E)
	psum := make([]float64, E)
	moeRows := 0
	var ceSum float64
	var terms int
	for _, ids := range rows {
		T := len(ids)
		h := make([][]float64, T)
		emb := get("model.embed_tokens.weight")
		for t, id := range ids {
			h[t] = append([]float64(nil), emb[id*H:(id+1)*H]...)
			if padRow != nil && c.PadTokenID != nil && id == *c.PadTokenID {
				copy(h[t], padRow)
			}
		}
		for li := 0; li < c.NumHiddenLayers; li++ {
			pre := fmt.Sprintf("model.layers.%d.", li)
			xn := make([][]float64, T)
			for t := range h {
				xn[t] = rms(h[t], get(pre+"input_layernorm.weight"))
			}
			var mix [][]float64
			if c.Mixer(li) == model.Attention {
				mix = refAttention(c, get, pre+"self_attn.", xn, lin)
			} else {
				mix = refMamba(c, get, pre+"mamba.", xn, lin, rms, act, silu)
			}
			for t := range h {
				for i := range h[t] {
					h[t][i] += mix[t][i]
				}
			}
			for t := range h {
				x := rms(h[t], get(pre+"pre_ff_layernorm.weight"))
				var out []float64
				if c.FFN(li) == model.MoE {
					f := pre + "feed_forward."
					pr := softmax(lin(get(f+"router.weight"), x, E))
					// top-k, ties to the lower index
					taken := make([]bool, E)
					out = make([]float64, H)
					for k := 0; k < K; k++ {
						best := -1
						for j := range pr {
							if !taken[j] && (best < 0 || pr[j] > pr[best]) {
								best = j
							}
						}
						taken[best] = true
						count[best]++
						y := mlp(fmt.Sprintf("%sexperts.%d.", f, best), x)
						for i := range out {
							out[i] += pr[best] * y[i]
						}
					}
					for j, v := range pr {
						psum[j] += v
					}
					moeRows++
				} else {
					out = mlp(pre+"feed_forward.", x)
				}
				for i := range h[t] {
					h[t][i] += out[i]
				}
			}
		}
		head := get("lm_head.weight")
		if c.TieWordEmbeddings {
			head = get("model.embed_tokens.weight")
		}
		for t := 0; t+1 < T; t++ {
			x := rms(h[t], get("model.final_layernorm.weight"))
			logits := lin(head, x, V)
			mx := math.Inf(-1)
			for _, v := range logits {
				mx = math.Max(mx, v)
			}
			var s float64
			for _, v := range logits {
				s += math.Exp(v - mx)
			}
			ceSum += mx + math.Log(s) - logits[ids[t+1]]
			terms++
		}
	}
	if moeRows > 0 {
		n := float64(moeRows)
		for j := range count {
			aux += count[j] / n * psum[j] / n
		}
		aux *= float64(E)
	}
	return ceSum / float64(terms), aux
}

func refAttention(c *model.Config, get func(string) []float64, pre string, x [][]float64, lin func(w, x []float64, out int) []float64) [][]float64 {
	H, hd := c.HiddenSize, c.HeadDimension()
	nH, nKV := c.NumAttentionHeads, c.NumKeyValueHeads
	T := len(x)
	q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
	for t := range x {
		q[t] = lin(get(pre+"q_proj.weight"), x[t], nH*hd)
		k[t] = lin(get(pre+"k_proj.weight"), x[t], nKV*hd)
		v[t] = lin(get(pre+"v_proj.weight"), x[t], nKV*hd)
	}
	out := make([][]float64, T)
	for t := range x {
		o := make([]float64, nH*hd)
		for h := 0; h < nH; h++ {
			g := h / (nH / nKV)
			s := make([]float64, t+1)
			mx := math.Inf(-1)
			for j := 0; j <= t; j++ {
				for i := 0; i < hd; i++ {
					s[j] += q[t][h*hd+i] * k[j][g*hd+i]
				}
				s[j] /= math.Sqrt(float64(hd))
				mx = math.Max(mx, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				sum += s[j]
			}
			for j := range s {
				for i := 0; i < hd; i++ {
					o[h*hd+i] += s[j] / sum * v[j][g*hd+i]
				}
			}
		}
		out[t] = lin(get(pre+"o_proj.weight"), o, H)
	}
	return out
}

func refMamba(c *model.Config, get func(string) []float64, pre string, u [][]float64,
	lin func(w, x []float64, out int) []float64, rms func(x, w []float64) []float64, act, silu func(float64) float64) [][]float64 {
	H, Di, N, Kc, R := c.HiddenSize, c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
	T := len(u)
	xs, zs := make([][]float64, T), make([][]float64, T)
	for t := range u {
		xz := lin(get(pre+"in_proj.weight"), u[t], 2*Di)
		if b := get(pre + "in_proj.bias"); b != nil {
			for i := range xz {
				xz[i] += b[i]
			}
		}
		xs[t], zs[t] = xz[:Di], xz[Di:]
	}
	convW, convB := get(pre+"conv1d.weight"), get(pre+"conv1d.bias")
	aLog, D := get(pre+"A_log"), get(pre+"D")
	h := make([]float64, Di*N)
	out := make([][]float64, T)
	for t := range u {
		xc := make([]float64, Di)
		for ch := 0; ch < Di; ch++ {
			var acc float64
			if convB != nil {
				acc = convB[ch]
			}
			for m := 0; m < Kc; m++ {
				if tt := t - (Kc - 1) + m; tt >= 0 {
					acc += convW[ch*Kc+m] * xs[tt][ch]
				}
			}
			xc[ch] = act(acc)
		}
		dbc := lin(get(pre+"x_proj.weight"), xc, R+2*N)
		dt, B, C := dbc[:R], dbc[R:R+N], dbc[R+N:]
		if w := get(pre + "dt_layernorm.weight"); w != nil {
			dt, B, C = rms(dt, w), rms(B, get(pre+"b_layernorm.weight")), rms(C, get(pre+"c_layernorm.weight"))
		}
		delta := lin(get(pre+"dt_proj.weight"), dt, Di)
		bias := get(pre + "dt_proj.bias")
		y := make([]float64, Di)
		for ch := range delta {
			v := delta[ch] + bias[ch]
			if v <= 20 {
				v = math.Log1p(math.Exp(v))
			}
			for n := 0; n < N; n++ {
				A := -math.Exp(aLog[ch*N+n])
				h[ch*N+n] = math.Exp(v*A)*h[ch*N+n] + v*B[n]*xc[ch]
				y[ch] += h[ch*N+n] * C[n]
			}
			y[ch] += D[ch] * xc[ch]
			y[ch] *= silu(zs[t][ch])
		}
		out[t] = lin(get(pre+"out_proj.weight"), y, H)
		if b := get(pre + "out_proj.bias"); b != nil {
			for i := range out[t] {
				out[t][i] += b[i]
			}
		}
	}
	return out
}
