package model

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/kernels"
)

// refForward is a float64 forward pass written from the architecture spec
// with plain loops and no sharing with the engine's code: the oracle for
// layouts the fixtures do not cover. It returns the logits [T][V].
func refForward(m *Model, ids []int) [][]float64 {
	c := m.Config
	H, T := c.HiddenSize, len(ids)
	eps := c.RMSNormEps
	mat := func(w *kernels.Matrix) [][]float64 {
		out := make([][]float64, w.Rows)
		row := make([]float32, w.Cols)
		for r := range out {
			w.Row(row, r)
			out[r] = make([]float64, w.Cols)
			for i, v := range row {
				out[r][i] = float64(v)
			}
		}
		return out
	}
	vec := func(v []float32) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	linear := func(w *kernels.Matrix, x [][]float64) [][]float64 {
		W := mat(w)
		out := make([][]float64, len(x))
		for t := range x {
			out[t] = make([]float64, len(W))
			for r := range W {
				var s float64
				for i, v := range W[r] {
					s += v * x[t][i]
				}
				out[t][r] = s
			}
		}
		return out
	}
	norm := func(x []float64, w []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(w[i]) * v * inv
		}
		return out
	}
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	act := func(v float64) float64 { return float64(activations[c.HiddenAct](float32(v))) }
	h := make([][]float64, T)
	for t, id := range ids {
		row := make([]float32, H)
		m.Embed.Row(row, id)
		h[t] = vec(row)
	}
	for li := range m.Layers {
		l := &m.Layers[li]
		x := make([][]float64, T)
		for t := range h {
			x[t] = norm(h[t], l.InputNorm)
		}
		var mix [][]float64
		switch l.Mixer {
		case Attention:
			nH, nKV, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDimension()
			q, k, v := linear(l.Attn.Q, x), linear(l.Attn.K, x), linear(l.Attn.V, x)
			o := make([][]float64, T)
			for t := range o {
				o[t] = make([]float64, nH*hd)
				for hh := 0; hh < nH; hh++ {
					g := hh / (nH / nKV)
					sc := make([]float64, t+1)
					mx := math.Inf(-1)
					for j := 0; j <= t; j++ {
						var s float64
						for d := 0; d < hd; d++ {
							s += q[t][hh*hd+d] * k[j][g*hd+d]
						}
						sc[j] = s / math.Sqrt(float64(hd))
						mx = math.Max(mx, sc[j])
					}
					var z float64
					for j := range sc {
						sc[j] = math.Exp(sc[j] - mx)
						z += sc[j]
					}
					for j := range sc {
						for d := 0; d < hd; d++ {
							o[t][hh*hd+d] += sc[j] / z * v[j][g*hd+d]
						}
					}
				}
			}
			mix = linear(l.Attn.O, o)
		case Mamba:
			w := l.Mamba
			Di, N, Kc, R := c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
			xz := linear(w.InProj, x)
			if w.InBias != nil {
				for t := range xz {
					for i := range xz[t] {
						xz[t][i] += float64(w.InBias[i])
					}
				}
			}
			xc := make([][]float64, T)
			for t := range xc {
				xc[t] = make([]float64, Di)
				for ch := 0; ch < Di; ch++ {
					var s float64
					if w.ConvB != nil {
						s = float64(w.ConvB[ch])
					}
					for j := 0; j < Kc; j++ {
						if src := t - (Kc - 1) + j; src >= 0 {
							s += float64(w.ConvW[ch*Kc+j]) * xz[src][ch]
						}
					}
					xc[t][ch] = act(s)
				}
			}
			dbc := linear(w.XProj, xc)
			dts := make([][]float64, T)
			Bs, Cs := make([][]float64, T), make([][]float64, T)
			for t := range dbc {
				dts[t], Bs[t], Cs[t] = dbc[t][:R], dbc[t][R:R+N], dbc[t][R+N:]
				if w.DtNorm != nil {
					dts[t], Bs[t], Cs[t] = norm(dts[t], w.DtNorm), norm(Bs[t], w.BNorm), norm(Cs[t], w.CNorm)
				}
			}
			dt := linear(w.DtProj, dts)
			state := make([]float64, Di*N)
			y := make([][]float64, T)
			for t := range y {
				y[t] = make([]float64, Di)
				for ch := 0; ch < Di; ch++ {
					d := dt[t][ch] + float64(w.DtBias[ch])
					if d <= 20 {
						d = math.Log1p(math.Exp(d))
					}
					var acc float64
					for n := 0; n < N; n++ {
						a := -math.Exp(float64(w.ALog[ch*N+n]))
						state[ch*N+n] = math.Exp(d*a)*state[ch*N+n] + d*Bs[t][n]*xc[t][ch]
						acc += state[ch*N+n] * Cs[t][n]
					}
					zz := xz[t][Di+ch]
					y[t][ch] = (acc + float64(w.D[ch])*xc[t][ch]) * zz * sig(zz)
				}
			}
			mix = linear(w.OutProj, y)
			if w.OutBias != nil {
				for t := range mix {
					for i := range mix[t] {
						mix[t][i] += float64(w.OutBias[i])
					}
				}
			}
		}
		for t := range h {
			for i := range h[t] {
				h[t][i] += mix[t][i]
			}
			x[t] = norm(h[t], l.PreFFNorm)
		}
		mlp := func(f *MLPWeights, x [][]float64) [][]float64 {
			g, u := linear(f.Gate, x), linear(f.Up, x)
			for t := range g {
				for i := range g[t] {
					g[t][i] = act(g[t][i]) * u[t][i]
				}
			}
			return linear(f.Down, g)
		}
		var ff [][]float64
		switch l.FFN {
		case Dense:
			ff = mlp(l.MLP, x)
		case MoE:
			logits := linear(l.MoE.Router, x)
			ff = make([][]float64, T)
			for t := range ff {
				ff[t] = make([]float64, H)
				p := make([]float64, len(logits[t]))
				mx := math.Inf(-1)
				for _, v := range logits[t] {
					mx = math.Max(mx, v)
				}
				var z float64
				for e, v := range logits[t] {
					p[e] = math.Exp(v - mx)
					z += p[e]
				}
				chosen := map[int]bool{}
				for k := 0; k < c.NumExpertsPerTok; k++ {
					best := -1
					for e := range p {
						if !chosen[e] && (best < 0 || p[e] > p[best]) {
							best = e
						}
					}
					chosen[best] = true
					out := mlp(&l.MoE.Experts[best], [][]float64{x[t]})[0]
					for i := range out {
						ff[t][i] += p[best] / z * out[i]
					}
				}
			}
		}
		for t := range h {
			for i := range h[t] {
				h[t][i] += ff[t][i]
			}
		}
	}
	for t := range h {
		h[t] = norm(h[t], m.FinalNorm)
	}
	return linear(m.LMHead, h)
}

// layoutCases are configurations the fixtures do not show, as config.json
// overrides of a small base.
var layoutCases = []struct{ name, json string }{
	{"attention at layer 0", `"attn_layer_period": 3, "attn_layer_offset": 0`},
	{"all attention", `"attn_layer_period": 1, "attn_layer_offset": 0`},
	{"pure mamba", `"attn_layer_period": 9, "attn_layer_offset": 8`},
	{"all moe, 5 experts top-3", `"expert_layer_period": 1, "expert_layer_offset": 0, "num_experts": 5, "num_experts_per_tok": 3`},
	{"one expert is dense", `"num_experts": 1, "num_experts_per_tok": 1`},
	{"odd heads, MHA", `"hidden_size": 24, "num_attention_heads": 3, "num_key_value_heads": 3, "attn_layer_offset": 1`},
	{"head_dim override", `"num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 5, "attn_layer_offset": 1`},
	{"gelu, no inner norms, biases, tied", `"hidden_act": "gelu", "mamba_inner_layernorms": false, "mamba_proj_bias": true, "mamba_conv_bias": false, "tie_word_embeddings": true`},
	{"odd state and conv", `"mamba_d_state": 5, "mamba_d_conv": 2, "mamba_expand": 3, "mamba_dt_rank": 3`},
}

const layoutBase = `"vocab_size": 61, "hidden_size": 16, "intermediate_size": 20, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 2, "attn_layer_period": 2, "attn_layer_offset": 1,
 "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 4, "num_experts_per_tok": 2,
 "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_dt_rank": 4, "max_position_embeddings": 4096,
 "initializer_range": 0.3`

// randomModel writes a random checkpoint for the config and loads it.
// initializer_range 0.3 gives O(1) activations, so a wrong formula shows.
func randomModel(t *testing.T, cfgJSON string, seed uint64) *Model {
	t.Helper()
	c, err := ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteInit(c, dir, "f32", seed, nil); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// Give biases, norms, dt bias and A_log random values too, so every
	// parameter matters: they alias no file (vectors are copied when
	// converted, but f32 vectors are views: replace, do not write).
	rng := rand.New(rand.NewPCG(seed, 99))
	jitter := func(v []float32, lo, hi float32) []float32 {
		if v == nil {
			return nil
		}
		out := make([]float32, len(v))
		for i := range out {
			out[i] = lo + (hi-lo)*rng.Float32()
		}
		return out
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		l.InputNorm, l.PreFFNorm = jitter(l.InputNorm, 0.5, 1.5), jitter(l.PreFFNorm, 0.5, 1.5)
		if w := l.Mamba; w != nil {
			w.DtBias = jitter(w.DtBias, -4, -1)
			w.ConvB, w.InBias, w.OutBias = jitter(w.ConvB, -0.5, 0.5), jitter(w.InBias, -0.5, 0.5), jitter(w.OutBias, -0.5, 0.5)
			w.DtNorm, w.BNorm, w.CNorm = jitter(w.DtNorm, 0.5, 1.5), jitter(w.BNorm, 0.5, 1.5), jitter(w.CNorm, 0.5, 1.5)
			w.D = jitter(w.D, 0.5, 1.5)
			w.ALog = jitter(w.ALog, 0, 2.7)
			for j, a := range w.ALog {
				w.A[j] = -float32(math.Exp(float64(a)))
			}
		}
	}
	m.FinalNorm = jitter(m.FinalNorm, 0.5, 1.5)
	m.prepare()
	return m
}

// TestLayoutsAgainstReference runs layouts the fixtures lack through the
// engine (one pass, then chunked) and the float64 reference.
func TestLayoutsAgainstReference(t *testing.T) {
	for i, tc := range layoutCases {
		t.Run(tc.name, func(t *testing.T) {
			m := randomModel(t, "{"+layoutBase+", "+tc.json+"}", uint64(i+1))
			rng := rand.New(rand.NewPCG(uint64(i), 5))
			ids := make([]int, 23)
			for j := range ids {
				ids[j] = rng.IntN(m.Config.VocabSize)
			}
			want := refForward(m, ids)
			flat := make([]float64, 0, len(ids)*m.Config.VocabSize)
			for _, r := range want {
				flat = append(flat, r...)
			}
			ws := m.NewWorkspace()
			if err := ws.Forward([]SeqInput{{Tokens: ids, AllLogits: true}}); err != nil {
				t.Fatal(err)
			}
			// float32 vs float64 on O(1) activations: ~1e-6; 1e-4 is the spec's bar.
			if e := relErr(ws.Logits(0), flat); e > refTol {
				t.Errorf("one pass: relative error %.3g", e)
			}
			st := m.NewCache(0)
			var got []float32
			for _, n := range []int{5, 1, 1, 9, 7} {
				pos := st.Len
				if err := ws.Forward([]SeqInput{{Tokens: ids[pos : pos+n], Cache: st, AllLogits: true}}); err != nil {
					t.Fatal(err)
				}
				got = append(got, ws.Logits(0)...)
			}
			if e := relErr(got, flat); e > refTol {
				t.Errorf("chunked: relative error %.3g", e)
			}
		})
	}
}

// TestLongSequence runs 600 tokens through tiny-moe in chunks of 100 and
// compares every position with the float64 reference.
func TestLongSequence(t *testing.T) {
	if testing.Short() {
		t.Skip("float64 reference over 600 tokens")
	}
	m, _ := loadFixture(t, "tiny-moe")
	rng := rand.New(rand.NewPCG(42, 0))
	ids := make([]int, 600)
	for i := range ids {
		ids[i] = rng.IntN(m.Config.VocabSize)
	}
	want := refForward(m, ids)
	ws := m.NewWorkspace()
	st := m.NewCache(0)
	V := m.Config.VocabSize
	for pos := 0; pos < len(ids); pos += 100 {
		if err := ws.Forward([]SeqInput{{Tokens: ids[pos : pos+100], Cache: st, AllLogits: true}}); err != nil {
			t.Fatal(err)
		}
		lg := ws.Logits(0)
		for j := 0; j < 100; j++ {
			if e := relErr(lg[j*V:(j+1)*V], want[pos+j]); e > refTol {
				t.Fatalf("position %d: relative error %.3g", pos+j, e)
			}
		}
	}
}

// TestReferenceMatchesFixture guards the reference itself: on tiny-moe it
// must reproduce Hugging Face's logits.
func TestReferenceMatchesFixture(t *testing.T) {
	m, dir := loadFixture(t, "tiny-moe-variant")
	refs := readRefs(t, filepath.Join(dir, "reference.safetensors"))
	T := refs["input_ids"].shape[1]
	ids := ints(refs["input_ids"].data[:T])
	got := refForward(m, ids)
	V := m.Config.VocabSize
	var diff, mag float64
	for tt := 0; tt < T; tt++ {
		for v := 0; v < V; v++ {
			w := refs["logits"].data[tt*V+v]
			diff = math.Max(diff, math.Abs(got[tt][v]-w))
			mag = math.Max(mag, math.Abs(w))
		}
	}
	// Both float64; HF rounds norms and softmaxes through float32 (~1e-7).
	if diff/mag > 1e-5 {
		t.Errorf("reference vs HF: relative error %.3g", diff/mag)
	}
}
