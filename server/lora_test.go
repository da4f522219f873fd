package server

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
	"github.com/openai/openai-go/v3"
)

// demoAdapter is the LoRA adapter of the demo model in testdata (a
// fine-tune on net/http, docs/TRAINING.md), as the forward pass applies it
// on the fly.
func demoAdapter(t testing.TB) *model.LowRank {
	t.Helper()
	m, _ := loadDemo(t)
	ad, err := lora.Load("../testdata/lora/gostd-nethttp", m.Config)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := lora.LowRankFor(m, ad)
	if err != nil {
		t.Fatal(err)
	}
	return lr
}

// greedyAdapter is greedy decoding of n tokens from p with the adapter lr
// (a plain Workspace loop), stopping at end-of-sequence.
func greedyAdapter(t testing.TB, lr *model.LowRank, p []int, n int) []int {
	t.Helper()
	m, _ := loadDemo(t)
	ws := m.NewWorkspace()
	c := m.NewCache(len(p) + n)
	toks := p
	var out []int
	for range n {
		if err := ws.Forward([]model.SeqInput{{Tokens: toks, Cache: c, Adapter: lr}}); err != nil {
			t.Fatal(err)
		}
		next := model.Argmax(ws.Logits(0))
		if slices.Contains(m.EOS(), next) {
			break
		}
		out = append(out, next)
		toks = []int{next}
	}
	return out
}

// TestOpenAIAdapterByName serves the demo model and an adapter of it
// (jamba serve --lora nethttp=DIR) and drives both with the official Go
// client: /v1/models lists the adapter with its parent; a greedy
// completion that names the adapter gives the adapted model's greedy
// tokens and reports the adapter as its model, with log-probabilities that
// differ from the base's for the same prompt; the base still answers with
// its own tokens; n = 2 works on the adapter, and requests of both run in
// the same engine at once.
func TestOpenAIAdapterByName(t *testing.T) {
	lr := demoAdapter(t)
	ec := engine.Config{MaxBatch: 4}
	e := newEnvAdapters(t, ec, Config{}, map[string]*model.LowRank{"nethttp": lr})
	c := e.client()
	ctx := context.Background()

	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		if m.ID == "nethttp" {
			var extra struct{ Parent string }
			if err := json.Unmarshal([]byte(m.RawJSON()), &extra); err != nil || extra.Parent != demo.Name {
				t.Errorf("the adapter's parent is %q (%v), want %q", extra.Parent, err, demo.Name)
			}
		}
	}
	if !slices.Equal(ids, []string{demo.Name, "nethttp"}) {
		t.Errorf("models %v", ids)
	}

	prompt := "func (w *response) "
	pids := e.tok.Encode(prompt, true)
	want := greedyAdapter(t, lr, pids, 24)
	wantText := strings.TrimPrefix(e.tok.Decode(append(append([]int(nil), pids...), want...), true), e.tok.Decode(pids, true))
	baseIDs, baseText, _ := greedy(t, pids, 24)
	lps := map[string][]float64{}
	for _, name := range []string{"nethttp", demo.Name} {
		res, err := c.Completions.New(ctx, openai.CompletionNewParams{
			Model:       openai.CompletionNewParamsModel(name),
			Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
			MaxTokens:   openai.Int(24),
			Temperature: openai.Float(0),
			Logprobs:    openai.Int(0),
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Model != name {
			t.Errorf("response model %q, asked %q", res.Model, name)
		}
		wt := wantText
		if name == demo.Name {
			wt = baseText
		}
		if got := res.Choices[0].Text; got != wt {
			t.Errorf("%s: text %q, the merged model's greedy text %q", name, got, wt)
		}
		lps[name] = res.Choices[0].Logprobs.TokenLogprobs
	}
	if slices.Equal(want, baseIDs) {
		// The same tokens: the log-probabilities must still tell the
		// models apart.
		moved := 0.0
		for i := range lps["nethttp"] {
			moved = max(moved, math.Abs(lps["nethttp"][i]-lps[demo.Name][i]))
		}
		if moved < 1e-3 {
			t.Errorf("the adapter's log-probabilities equal the base's (largest difference %g)", moved)
		}
	}
	res, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model:  "nethttp",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		N:      openai.Int(2), MaxTokens: openai.Int(4), Seed: openai.Int(1),
	})
	if err != nil || len(res.Choices) != 2 {
		t.Fatalf("n = 2 on the adapter: %v, %+v", err, res)
	}
	// Both models at once: the same texts as one at a time.
	texts := make([]string, 4)
	errs := make(chan error, 4)
	for i := range texts {
		go func() {
			name := demo.Name
			if i%2 == 0 {
				name = "nethttp"
			}
			r, err := c.Completions.New(ctx, openai.CompletionNewParams{
				Model:     openai.CompletionNewParamsModel(name),
				Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
				MaxTokens: openai.Int(24), Temperature: openai.Float(0),
			})
			if err == nil {
				texts[i] = r.Choices[0].Text
			}
			errs <- err
		}()
	}
	for range texts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, got := range texts {
		w := wantText
		if i%2 == 1 {
			w = baseText
		}
		if got != w {
			t.Errorf("concurrent request %d: %q, want %q", i, got, w)
		}
	}
	waitIdle(t, e.eng)
}
