package engine_test

import (
	"context"
	"fmt"
	"os"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/statestore"
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

// Keep states beyond one engine: with a Store, a finished request's state
// is written there before its stream ends, and another engine (a
// restarted server, a replica sharing the store) continues it.
func ExampleConfig_store() {
	m, err := demo.Load(model.Options{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	dir, err := os.MkdirTemp("", "states")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	store, err := statestore.OpenDir(dir, statestore.Options{Budget: 1 << 30})
	if err != nil {
		panic(err)
	}
	run := func(prompt []int) {
		e, err := engine.New(m, engine.Config{MaxBatch: 1, Store: store})
		if err != nil {
			panic(err)
		}
		defer e.Close()
		st, err := e.Submit(context.Background(), engine.Request{Prompt: prompt, MaxTokens: 1})
		if err != nil {
			panic(err)
		}
		for range st.Events() {
		}
		fmt.Printf("%d prompt tokens, %d continued from a stored state\n", st.PromptTokens(), st.CachedTokens())
	}
	prompt := []int{1, 500, 600, 700, 800}
	run(prompt)
	run(append(prompt, 900, 1000)) // another engine, the same store
	// Output:
	// 5 prompt tokens, 0 continued from a stored state
	// 7 prompt tokens, 5 continued from a stored state
}
