package cuda

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
	"github.com/jamba-go/jamba/sample"
)

// engineRun submits every request at once and returns each one's tokens
// and cached prompt tokens.
func engineRun(t *testing.T, e *engine.Engine, rs []engine.Request) ([][]int, []int) {
	t.Helper()
	streams := make([]*engine.Stream, len(rs))
	for i, r := range rs {
		s, err := e.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	out := make([][]int, len(rs))
	cached := make([]int, len(rs))
	for i, s := range streams {
		for ev := range s.Events() {
			if ev.Err != nil {
				t.Fatalf("request %d: %v", i, ev.Err)
			}
			if ev.HasToken() {
				out[i] = append(out[i], ev.Token)
			}
		}
		cached[i] = s.CachedTokens()
	}
	return out, cached
}

// agree fails unless the greedy continuations a (the GPU's) and b (the
// reference's) of prompt are the same tokens, up to a tie: where they
// first differ, the CPU's logits of the two tokens must be within logitTol
// of the largest logit (float32 sums in another order may take either),
// and the rest is not compared. It returns the number of tokens compared.
func agree(t *testing.T, cm *model.Model, what string, prompt, a, b []int) int {
	t.Helper()
	n := min(len(a), len(b))
	for k := range n {
		if a[k] == b[k] {
			continue
		}
		ws := cm.NewWorkspace()
		ids := append(slices.Clone(prompt), b[:k]...)
		if err := ws.Forward([]model.SeqInput{{Tokens: ids, Cache: cm.NewCache(len(ids))}}); err != nil {
			t.Fatal(err)
		}
		l := ws.Logits(0)
		var top float64
		for _, x := range l {
			top = max(top, math.Abs(float64(x)))
		}
		if d := math.Abs(float64(l[a[k]] - l[b[k]])); d > logitTol*top {
			t.Errorf("%s: token %d is %d, the reference's %d (logits %.6g and %.6g: not a tie)\n got %v\nwant %v", what, k, a[k], b[k], l[a[k]], l[b[k]], a, b)
		} else {
			t.Logf("%s: token %d is %d, the reference's %d: a tie (logits differ by %.3g of the largest); the rest is not compared", what, k, a[k], b[k], d/top)
		}
		return k
	}
	if len(a) != len(b) {
		t.Errorf("%s: %d tokens, the reference %d", what, len(a), len(b))
	}
	return n
}

// engineFixtures are the fixture models that travel with the repository.
var engineFixtures = []string{"tiny-dense", "tiny-moe", "hf-gostd-13m"}

// TestEngineGPU runs the serving engine on the GPU (EngineBackend) against
// the CPU engine on every fixture model: a batch of greedy requests of 5
// to 600 prompt tokens (the reference prompt's continuation equal to
// transformers' greedy ids), the same requests one at a time, a request
// continuing a finished one's whole state and one continuing the copy of
// the Mamba state taken at the end of a prompt (cached tokens reported,
// the same tokens as computed whole), parallel choices from copies of one
// state, and requests sampled on the GPU beside greedy ones.
func TestEngineGPU(t *testing.T) {
	dev := gpu(t)
	for _, name := range engineFixtures {
		t.Run(name, func(t *testing.T) {
			dir := fixtureDir(t, name)
			cm, err := model.Load(dir, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer cm.Close()
			gm, err := Upload(dev, cm)
			if err != nil {
				t.Fatal(err)
			}
			defer gm.Close()
			V := cm.Config.VocabSize

			// The reference prompt and its greedy ids, when the fixture has them.
			var refPrompt, refIDs []int
			if f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors")); err == nil {
				if tt, err := f.Tensor("prompt"); err == nil {
					v, _ := tt.Int64()
					for _, x := range v {
						refPrompt = append(refPrompt, int(x))
					}
				}
				f.Close()
			}
			var ref struct {
				Greedy []int `json:"greedy_with_cache"`
			}
			data, _ := os.ReadFile(filepath.Join(dir, "reference.json"))
			_ = json.Unmarshal(data, &ref)
			refIDs = ref.Greedy

			rng := uint64(7)
			randPrompt := func(n int) []int {
				p := make([]int, n)
				for i := range p {
					rng = rng*6364136223846793005 + 1442695040888963407
					p[i] = int((rng >> 33) % uint64(V))
				}
				return p
			}
			var rs []engine.Request
			if refPrompt != nil && len(refIDs) > 0 {
				rs = append(rs, engine.Request{Prompt: refPrompt, MaxTokens: len(refIDs), IgnoreEOS: true})
			}
			for _, n := range []int{5, 40, 600} {
				rs = append(rs, engine.Request{Prompt: randPrompt(n), MaxTokens: 16, IgnoreEOS: true})
			}
			cfg := engine.Config{MaxBatch: 4, Context: 1024}
			cpu, err := engine.New(cm, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cpu.Close()
			ge, err := engine.NewOn(cm, EngineBackend(gm), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ge.Close()

			want, _ := engineRun(t, cpu, rs)
			got, _ := engineRun(t, ge, rs)
			st := ge.Stats()
			if st.StepSequences <= st.Steps {
				t.Errorf("no GPU step batched several sequences: %+v", st)
			}
			t.Logf("batched on the GPU: %d steps, %d sequence-steps, %d tokens", st.Steps, st.StepSequences, st.StepTokens)
			for i := range rs {
				agree(t, cm, fmt.Sprintf("batched request %d (%d prompt tokens) vs the CPU engine", i, len(rs[i].Prompt)), rs[i].Prompt, got[i], want[i])
			}
			if refIDs != nil {
				if !slices.Equal(got[0], refIDs) {
					t.Errorf("greedy on the GPU engine:\n got %v\nwant %v (transformers)", got[0], refIDs)
				} else {
					t.Logf("reference prompt: the GPU engine's %d greedy ids equal transformers'", len(refIDs))
				}
			}

			// One at a time: the same tokens as batched.
			one, err := engine.NewOn(cm, EngineBackend(gm), engine.Config{MaxBatch: 1, Context: 1024})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range rs {
				alone, _ := engineRun(t, one, []engine.Request{r})
				agree(t, cm, fmt.Sprintf("request %d alone vs batched", i), r.Prompt, alone[0], got[i])
			}
			if err := one.Close(); err != nil {
				t.Fatal(err)
			}

			// Prefix reuse: request 1 continued past its output (its whole
			// state: the last token generated is not fed), request 2's prompt
			// followed by other tokens (its copy at the end of the prompt,
			// then a rewind), against a cold GPU engine.
			a, b := rs[len(rs)-3], rs[len(rs)-2]
			ga := got[len(rs)-3]
			ext := append(append(slices.Clone(a.Prompt), ga...), randPrompt(3)...)
			other := append(slices.Clone(b.Prompt), randPrompt(2)...)
			rs2 := []engine.Request{{Prompt: ext, MaxTokens: 12, IgnoreEOS: true}, {Prompt: other, MaxTokens: 12, IgnoreEOS: true}}
			got2, cached := engineRun(t, ge, rs2)
			cold, err := engine.NewOn(cm, EngineBackend(gm), engine.Config{MaxBatch: 4, Context: 1024, NoPrefixReuse: true})
			if err != nil {
				t.Fatal(err)
			}
			want2, cold0 := engineRun(t, cold, rs2)
			if err := cold.Close(); err != nil {
				t.Fatal(err)
			}
			wantCached := []int{len(a.Prompt) + len(ga) - 1, len(b.Prompt)}
			if !slices.Equal(cached, wantCached) || !slices.Equal(cold0, []int{0, 0}) {
				t.Errorf("cached tokens %v (cold %v), want %v", cached, cold0, wantCached)
			} else {
				t.Logf("prefix reuse: cached tokens %v of prompts of %d and %d", cached, len(ext), len(other))
			}
			for i := range rs2 {
				agree(t, cm, fmt.Sprintf("continued request %d vs computed whole", i), rs2[i].Prompt, got2[i], want2[i])
			}

			// Parallel choices: copies of the leader's state on the device.
			streams, err := ge.SubmitGroup(context.Background(), []engine.Request{rs[1], rs[1], rs[1]})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range streams {
				var ids []int
				for ev := range s.Events() {
					if ev.Err != nil {
						t.Fatalf("choice %d: %v", i, ev.Err)
					}
					if ev.HasToken() {
						ids = append(ids, ev.Token)
					}
				}
				agree(t, cm, fmt.Sprintf("choice %d", i), rs[1].Prompt, ids, got[1])
			}

			// Sampled requests are drawn on the GPU, per request (its own
			// parameters, seed and step), in the same steps as greedy ones:
			// top-k 1 gives the greedy ids; a draw with temperature 0.8 and
			// top-k 20 is the same from the same seed, and every token is
			// within the CPU's 20 most likely (up to ties within 1e-3).
			sr := engine.Request{Prompt: rs[1].Prompt, MaxTokens: 16, IgnoreEOS: true, Sampling: sample.Params{Temperature: 0.8, TopK: 20, Seed: 9}}
			k1 := rs[0]
			k1.Sampling = sample.Params{Temperature: 1, TopK: 1, Seed: 3}
			mixed := []engine.Request{rs[0], k1, sr}
			cold2, err := engine.NewOn(cm, EngineBackend(gm), engine.Config{MaxBatch: 4, Context: 1024, NoPrefixReuse: true})
			if err != nil {
				t.Fatal(err)
			}
			gotMixed, _ := engineRun(t, cold2, mixed)
			again, _ := engineRun(t, cold2, mixed)
			if err := cold2.Close(); err != nil {
				t.Fatal(err)
			}
			agree(t, cm, "top-k 1 drawn on the GPU vs greedy", k1.Prompt, gotMixed[1], got[0])
			if !slices.Equal(gotMixed[2], again[2]) || len(gotMixed[2]) != 16 {
				t.Errorf("sampled on the GPU twice from one seed: %v, %v", gotMixed[2], again[2])
			}
			ws := cm.NewWorkspace()
			ids := append(slices.Clone(sr.Prompt), gotMixed[2]...)
			if err := ws.Forward([]model.SeqInput{{Tokens: ids, Cache: cm.NewCache(len(ids)), Logits: model.AllLogits}}); err != nil {
				t.Fatal(err)
			}
			all := ws.Logits(0)
			for k, id := range gotMixed[2] {
				row := all[(len(sr.Prompt)-1+k)*V : (len(sr.Prompt)+k)*V]
				var top float64
				for _, x := range row {
					top = max(top, math.Abs(float64(x)))
				}
				above := 0
				for _, x := range row {
					if float64(x) > float64(row[id])+logitTol*top {
						above++
					}
				}
				if above >= 20 {
					t.Errorf("sampled token %d (%d) has %d more likely ids on the CPU: outside the top 20", k, id, above)
				}
			}
			t.Logf("sampled on the GPU (T 0.8, top-k 20, seed 9): %v, the same twice, every token in the CPU's top 20; top-k 1 equal to greedy", gotMixed[2])
		})
	}
}
