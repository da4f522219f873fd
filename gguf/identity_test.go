package gguf

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/safetensors"
)

// hfSources returns the Hugging Face tensors (in stacking order) that the
// GGUF tensor name was converted from, as llama.cpp's convert_hf_to_gguf.py
// names them for JambaForCausalLM, or nil for a tensor whose values are
// computed (ssm_a = -exp(A_log)) rather than copied. nExperts is the
// expert count of an MoE layer.
func hfSources(name string, nExperts int) []string {
	switch name {
	case "token_embd.weight":
		return []string{"model.embed_tokens.weight"}
	case "output.weight":
		return []string{"lm_head.weight"}
	case "output_norm.weight":
		return []string{"model.final_layernorm.weight"}
	}
	m := regexp.MustCompile(`^blk\.(\d+)\.(.+)$`).FindStringSubmatch(name)
	if m == nil {
		return nil
	}
	p := "model.layers." + m[1] + "."
	direct := map[string]string{
		"attn_norm.weight":    "input_layernorm.weight",
		"ffn_norm.weight":     "pre_ff_layernorm.weight",
		"ssm_in.weight":       "mamba.in_proj.weight",
		"ssm_x.weight":        "mamba.x_proj.weight",
		"ssm_dt.weight":       "mamba.dt_proj.weight",
		"ssm_dt.bias":         "mamba.dt_proj.bias",
		"ssm_out.weight":      "mamba.out_proj.weight",
		"ssm_conv1d.weight":   "mamba.conv1d.weight",
		"ssm_conv1d.bias":     "mamba.conv1d.bias",
		"ssm_d":               "mamba.D",
		"ssm_dt_norm.weight":  "mamba.dt_layernorm.weight",
		"ssm_b_norm.weight":   "mamba.b_layernorm.weight",
		"ssm_c_norm.weight":   "mamba.c_layernorm.weight",
		"attn_q.weight":       "self_attn.q_proj.weight",
		"attn_k.weight":       "self_attn.k_proj.weight",
		"attn_v.weight":       "self_attn.v_proj.weight",
		"attn_output.weight":  "self_attn.o_proj.weight",
		"ffn_gate.weight":     "feed_forward.gate_proj.weight",
		"ffn_up.weight":       "feed_forward.up_proj.weight",
		"ffn_down.weight":     "feed_forward.down_proj.weight",
		"ffn_gate_inp.weight": "feed_forward.router.weight",
	}
	if s, ok := direct[m[2]]; ok {
		return []string{p + s}
	}
	if proj, ok := strings.CutPrefix(m[2], "ffn_"); ok {
		if proj, ok = strings.CutSuffix(proj, "_exps.weight"); ok {
			var out []string
			for e := 0; e < nExperts; e++ {
				out = append(out, p+"feed_forward.experts."+strconv.Itoa(e)+"."+proj+"_proj.weight")
			}
			return out
		}
	}
	return nil
}

// TestFixtureQuantizationIdentity quantizes the bf16 weights of
// hf-gostd-13m (widened to float32, as llama-quantize widens the BF16 GGUF
// it reads) to each tensor's type in each fixture GGUF and compares the
// bytes with the fixture's, block by block.
func TestFixtureQuantizationIdentity(t *testing.T) {
	hf, err := safetensors.OpenDir(testutil.Shared(t, "models/hf-gostd-13m"))
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	for _, file := range []string{"gostd-13m-bf16.gguf", "gostd-13m-q8_0.gguf", "gostd-13m-q4_0.gguf", "gostd-13m-q4_k_m.gguf"} {
		t.Run(file, func(t *testing.T) {
			f, err := Open(testutil.Shared(t, filepath.Join("gguf", file)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			nExperts, err := f.Int("jamba.expert_count")
			if err != nil {
				t.Fatal(err)
			}
			type tally struct{ tensors, blocks, differ int }
			byType := map[Type]*tally{}
			for _, info := range f.Tensors() {
				srcs := hfSources(info.Name, int(nExperts))
				if srcs == nil {
					if info.Name[len(info.Name)-5:] != "ssm_a" {
						t.Errorf("%s: no source tensor known", info.Name)
					}
					continue
				}
				var x []float32
				for _, s := range srcs {
					ht, err := hf.Tensor(s)
					if err != nil {
						t.Fatal(err)
					}
					v, err := ht.Float32()
					if err != nil {
						t.Fatal(err)
					}
					x = append(x, v...)
				}
				if int64(len(x)) != info.NumElements() {
					t.Fatalf("%s: %d source elements for %v", info.Name, len(x), info.Dims)
				}
				got := make([]byte, info.Size)
				if err := Quantize(info.Type, x, got); err != nil {
					t.Fatalf("%s: %v", info.Name, err)
				}
				want, err := f.Data(info.Name)
				if err != nil {
					t.Fatal(err)
				}
				tl := byType[info.Type]
				if tl == nil {
					tl = &tally{}
					byType[info.Type] = tl
				}
				tl.tensors++
				bb := info.Type.BlockBytes()
				first := -1
				for i := 0; i < len(want); i += bb {
					tl.blocks++
					if !bytes.Equal(got[i:i+bb], want[i:i+bb]) {
						tl.differ++
						if first < 0 {
							first = i / bb
						}
					}
				}
				if first >= 0 {
					i := first * bb
					t.Errorf("%s (%s): block %d differs:\n got  %x\n want %x", info.Name, info.Type, first, got[i:i+bb], want[i:i+bb])
				}
			}
			var summary []string
			for typ, tl := range byType {
				summary = append(summary, fmt.Sprintf("%s: %d tensors, %d blocks, %d differ", typ, tl.tensors, tl.blocks, tl.differ))
			}
			t.Logf("%s", strings.Join(summary, "; "))
		})
	}
}
