package engine

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	demopkg "github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/structured"
	"github.com/jamba-go/jamba/tokenizer"
)

const benchSchema = `{"type":"object","properties":{
	"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
	"role":{"enum":["admin","user","guest"]},"score":{"type":"number"},
	"tags":{"type":"array","items":{"type":"string"},"maxItems":8},
	"address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["city"]}},
	"required":["name","age","role","tags","address"],"additionalProperties":false}`

// BenchmarkConstrainedDecode compares the decode step of one stream with
// and without a JSON schema constraint, on the model of BenchmarkThroughput
// with a vocabulary of its size: the demo model's own tokenizer, or for a
// model of another vocabulary the llama2 fixture tokenizer (ids past its
// 32000 have no text and are never allowed). "cold" compiles a new index
// for each request, so every state's token set is computed by a trie
// walk; "warm" reuses one, as a server does for a repeated schema. It
// reports the median time between consecutive tokens.
func BenchmarkConstrainedDecode(b *testing.B) {
	m := benchModel(b)
	V := m.Config.VocabSize
	var tok *tokenizer.Tokenizer
	var err error
	if V == 4096 {
		data, _ := demopkg.File("tokenizer.json")
		tok, err = tokenizer.LoadBytes(data, nil)
	} else {
		tok, err = tokenizer.Load(filepath.Join(testutil.Fixture(b, "tokenizers/llama2"), "tokenizer.json"))
	}
	if err != nil {
		b.Fatal(err)
	}
	toks := make([][]byte, V)
	var eos []int
	for id := range V {
		if m.IsEOS(id) {
			eos = append(eos, id)
		} else if t, ok := tok.TokenBytes(id); ok {
			toks[id] = t
		}
	}
	vocab := structured.NewVocab(toks, eos)
	g, err := structured.Compile([]byte(benchSchema))
	if err != nil {
		b.Fatal(err)
	}
	const promptLen, maxTokens = 16, 48
	for _, mode := range []string{"none", "cold", "warm"} {
		b.Run("constraint="+mode, func(b *testing.B) {
			e, err := New(m, Config{MaxBatch: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			ix := structured.NewIndex(g, vocab)
			var gaps []time.Duration
			for i := 0; b.Loop(); i++ {
				r := Request{Prompt: prompt(i, promptLen), MaxTokens: maxTokens, IgnoreEOS: mode == "none"}
				switch mode {
				case "cold":
					r.Constraint = structured.NewIndex(g, vocab).NewMatcher()
				case "warm":
					r.Constraint = ix.NewMatcher()
				}
				s, err := e.Submit(context.Background(), r)
				if err != nil {
					b.Fatal(err)
				}
				var last time.Time
				for ev := range s.Events() {
					if ev.Err != nil {
						b.Fatal(ev.Err)
					}
					if ev.Token < 0 {
						continue
					}
					now := time.Now()
					if !last.IsZero() {
						gaps = append(gaps, now.Sub(last))
					}
					last = now
				}
			}
			slices.Sort(gaps)
			b.ReportMetric(float64(gaps[len(gaps)/2].Microseconds())/1000, "p50-ms/token")
			var sum time.Duration
			for _, d := range gaps {
				sum += d
			}
			b.ReportMetric(float64(sum.Microseconds())/1000/float64(len(gaps)), "mean-ms/token")
		})
	}
}
