package engine_test

import (
	"context"
	"fmt"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/textgen"
)

// Serve requests on one model: Submit queues a request in token ids and
// its tokens arrive as events; requests submitted together share each
// forward pass. textgen turns the ids into text.
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
	e, err := engine.New(m, engine.Config{MaxBatch: 2})
	if err != nil {
		panic(err)
	}
	defer e.Close()

	prompts := []string{"func main() {", "// Package http"}
	var streams []*engine.Stream
	for _, p := range prompts {
		st, err := e.Submit(context.Background(), engine.Request{Prompt: tok.Encode(p, true), MaxTokens: 8})
		if err != nil {
			panic(err)
		}
		streams = append(streams, st)
	}
	for i, st := range streams {
		text := textgen.NewStream(tok, tok.Encode(prompts[i], true), nil, true)
		out := ""
		for ev := range st.Events() {
			if ev.HasToken() {
				s, _ := text.Add(ev.Token)
				out += s
			}
			if ev.Finish != "" {
				s, _ := text.Finish()
				fmt.Printf("%q: %q (%s)\n", prompts[i], out+s, ev.Finish)
			}
		}
	}
	// Output:
	// "func main() {": "}\n\nfunc (g *GCM) S" (length)
	// "// Package http": "/x509/x509/x" (length)
}
