package structured

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/tokenizer"
)

// benchSchema and benchDoc are a typical structured-output request: a
// record with strings, numbers, an enum, an array and a nested object.
const (
	benchSchema = `{"type":"object","properties":{
		"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
		"email":{"type":"string","format":"email"},"role":{"enum":["admin","user","guest"]},
		"score":{"type":"number"},"tags":{"type":"array","items":{"type":"string"},"maxItems":8},
		"address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},"zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["city"]},
		"active":{"type":"boolean"}},
		"required":["name","age","role"],"additionalProperties":false}`
	benchDoc = `{"name": "Ada Lovelace, Countess of Lovelace", "age": 36, "email": "ada.king@analytical.org", "role": "admin", "score": 97.25, "tags": ["mathematics", "poetry of science", "engines", "notes on the analytical engine"], "address": {"street": "12 St James's Square", "city": "London", "zip": "10001"}, "active": true}`
)

// benchVocab is a fixture tokenizer's vocabulary as a model of 65536
// logits sees it: ids past the tokenizer's (llama2 has 32000) have no
// text, ids past 65536 (qwen3 has 151k) are left out.
func benchVocab(b *testing.B, name string) (*tokenizer.Tokenizer, *Vocab) {
	dir := testutil.Fixture(b, filepath.Join("tokenizers", name))
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		b.Fatal(err)
	}
	const V = 65536
	toks := make([][]byte, V)
	for id := range min(V, tok.VocabSize()) {
		if t, ok := tok.TokenBytes(id); ok {
			toks[id] = t
		}
	}
	eos, _ := tok.EOS()
	return tok, NewVocab(toks, []int{eos})
}

// BenchmarkConstrainedToken times what structured output adds to one
// decode step, Mask and Accept, replaying benchDoc's tokens: cold (a new
// index: every state's token set computed by a trie walk) and warm (the
// index of an earlier request with the same schema). It reports the mean
// per token, and the median and 90th percentile of the last pass.
func BenchmarkConstrainedToken(b *testing.B) {
	g, err := Compile([]byte(benchSchema))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"llama2", "qwen3"} {
		tok, v := benchVocab(b, name)
		ids := tok.Encode(benchDoc, false)
		if id, ok := tok.BOS(); ok && len(ids) > 0 && ids[0] == id {
			ids = ids[1:]
		}
		ids = slices.DeleteFunc(ids, func(id int) bool { return id >= v.size })
		logits := make([]float32, v.size)
		for _, warm := range []bool{false, true} {
			mode := "cold"
			if warm {
				mode = "warm"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				ix := NewIndex(g, v)
				if warm { // an earlier request with this schema
					m := ix.NewMatcher()
					for _, id := range ids {
						m.Mask(logits)
						m.Accept(id)
					}
				}
				per := make([]time.Duration, 0, len(ids))
				var total time.Duration
				for b.Loop() {
					if !warm {
						ix = NewIndex(g, v)
					}
					m := ix.NewMatcher()
					per = per[:0]
					for _, id := range ids {
						t0 := time.Now()
						m.Mask(logits)
						if !m.Accept(id) {
							b.Fatalf("%s: token %d (%q) refused", name, id, v.Text(id))
						}
						d := time.Since(t0)
						per = append(per, d)
						total += d
					}
					if !m.Done() {
						b.Fatalf("%s: the document is not complete", name)
					}
				}
				slices.Sort(per)
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*len(ids)), "ns/token")
				b.ReportMetric(float64(per[len(per)/2].Nanoseconds()), "p50-ns/token")
				b.ReportMetric(float64(per[len(per)*9/10].Nanoseconds()), "p90-ns/token")
				b.ReportMetric(float64(len(ids)), "tokens")
			})
		}
	}
}
