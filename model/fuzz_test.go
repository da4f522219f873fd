package model

import (
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// FuzzParseConfig feeds arbitrary documents to the config parser: it must
// return an error or a config whose derived quantities are consistent.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"tiny-dense", "tiny-moe"} {
		f.Add(testutil.ReadFile(f, "models/"+name+"/config.json"))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": null, "eos_token_id": [2, 3], "mamba_dt_rank": "auto"}`))
	f.Add([]byte(`{"num_hidden_layers": 3, "attn_layer_period": 1, "attn_layer_offset": 0, "num_experts": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		total, active := c.ParamCount()
		if total <= 0 || active <= 0 || active > total+int64(c.VocabSize)*int64(c.HiddenSize) {
			t.Fatalf("params %d total, %d active", total, active)
		}
		sh := (&Model{Config: c}).CacheShape()
		if len(sh.Layers) != c.NumHiddenLayers || sh.KVDim <= 0 || sh.Inner <= 0 {
			t.Fatalf("cache shape %+v", sh)
		}
	})
}
