package model_test

import (
	"fmt"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/model"
)

// Load a model (model.Load reads a Hugging Face checkpoint folder; here the
// embedded demo model), run a prompt through it with a cache, and continue
// greedily one token at a time: the same Forward call serves prefill and
// decode.
func Example() {
	m, err := demo.Load(model.Options{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	tok, err := demo.Tokenizer()
	if err != nil {
		panic(err)
	}
	ws := m.NewWorkspace()
	st := m.NewCache(0)
	in := []model.SeqInput{{Tokens: tok.Encode("for i := 0; i < n;", true), Cache: st}}
	var out []int
	for range 6 {
		if err := ws.Forward(in); err != nil {
			panic(err)
		}
		next := model.Argmax(ws.Logits(0))
		out = append(out, next)
		in[0].Tokens = []int{next}
	}
	fmt.Printf("%d tokens in the cache, then %q\n", st.Len, tok.Decode(out, true))
	// Output:
	// 14 tokens in the cache, then "i++ {\n\t\tc := n\n\t\tfor"
}
