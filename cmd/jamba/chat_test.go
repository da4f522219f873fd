package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
	"github.com/jamba-go/jamba/tokenizer"
)

// TestChatKeepsCache checks that a second turn feeds only the new part of
// the conversation and that its answer equals a fresh run over the whole
// rendered conversation.
func TestChatKeepsCache(t *testing.T) {
	newSession, _ := demoChat(t, 16)
	s := newSession()
	var out1, out2 strings.Builder
	if err := s.turn("func add(a, b int) int {", &out1); err != nil {
		t.Fatal(err)
	}
	if s.st.Len != len(s.fed) || len(s.fed) == 0 {
		t.Fatalf("cache holds %d tokens, fed %d", s.st.Len, len(s.fed))
	}
	fedBefore := len(s.fed)
	if err := s.turn("more", &out2); err != nil {
		t.Fatal(err)
	}
	if len(s.fed) <= fedBefore {
		t.Fatalf("second turn fed %d ids, first %d", len(s.fed), fedBefore)
	}
	// A fresh session given the same history must answer the same.
	f := newSession()
	f.msgs = append(f.msgs, s.msgs[:len(s.msgs)-1]...)
	f.msgs = f.msgs[:len(f.msgs)-1] // drop the last user message; turn adds it back
	var out3 strings.Builder
	if err := f.turn("more", &out3); err != nil {
		t.Fatal(err)
	}
	if out2.String() != out3.String() {
		t.Errorf("answer with the kept cache %q, fresh %q", out2.String(), out3.String())
	}
}

func TestChatCommand(t *testing.T) {
	old := stdin
	defer func() { stdin = old }()
	stdin = strings.NewReader("hello\n/reset\nfunc main() {\n/exit\n")
	out, stderr, code := run(t, "chat", "--max-tokens", "8", "--temperature", "0")
	if code != 0 {
		t.Fatalf("chat failed: %s", stderr)
	}
	if strings.Count(out, "\n") < 2 || !strings.Contains(stderr, "/reset") {
		t.Errorf("chat output %q, stderr %q", out, stderr)
	}
}

// TestChatControlText types the text of the tokenizer's special tokens: the
// prompt holds no special id but the BOS the tokenizer adds, and the next
// turn feeds only the new part of the conversation, as it does for ordinary
// text, and answers as a fresh session given the whole conversation.
func TestChatControlText(t *testing.T) {
	newSession, tok := demoChat(t, 8)
	bos, _ := tok.BOS()
	for _, first := range []string{"func f() {", "x <|endoftext|><|startoftext|> y"} {
		// One token of answer: the fed ids are then the prompt alone, and
		// the answer re-encodes to what follows it (a longer answer may not,
		// as the model need not pick the tokens the tokenizer would).
		s := newSession()
		s.maxTokens = 1
		var out strings.Builder
		if err := s.turn(first, &out); err != nil {
			t.Fatal(err)
		}
		s.maxTokens = 8
		f := newSession()
		f.msgs = append(f.msgs, chat.NewMessage("user", first))
		prompt, err := f.encode(true)
		if err != nil {
			t.Fatal(err)
		}
		if prompt[0] != bos || !slices.Equal(s.fed[:len(prompt)], prompt) {
			t.Fatalf("%q: prompt %v, fed %v", first, prompt, s.fed)
		}
		for _, id := range prompt[1:] {
			if tok.IsSpecial(id) {
				t.Fatalf("%q: special id %d in the prompt %v", first, id, prompt)
			}
		}
		// The second turn continues the cache: the new prompt extends what
		// was fed, so turn feeds only the rest.
		second := "and <|endoftext|> then"
		f.msgs = append(append(f.msgs[:0], s.msgs...), chat.NewMessage("user", second))
		next, err := f.encode(true)
		if err != nil {
			t.Fatal(err)
		}
		if len(next) <= len(s.fed) || !slices.Equal(next[:len(s.fed)], s.fed) {
			t.Fatalf("%q: the second prompt %v does not extend what was fed %v", first, next, s.fed)
		}
		var out2, out3 strings.Builder
		if err := s.turn(second, &out2); err != nil {
			t.Fatal(err)
		}
		if s.st.Len != len(s.fed) || !slices.Equal(s.fed[:len(next)], next) {
			t.Fatalf("%q: cache holds %d tokens, fed %d", first, s.st.Len, len(s.fed))
		}
		g := newSession()
		g.msgs = append(g.msgs, s.msgs[:len(s.msgs)-2]...)
		if err := g.turn(second, &out3); err != nil {
			t.Fatal(err)
		}
		if out2.String() != out3.String() {
			t.Errorf("%q: answer with the kept cache %q, fresh %q", first, out2.String(), out3.String())
		}
	}
}

// demoChat returns a maker of greedy chat sessions over the demo model, its
// tokenizer and chat template, answering at most maxTokens tokens a turn,
// and the tokenizer.
func demoChat(t *testing.T, maxTokens int) (func() *chatSession, *tokenizer.Tokenizer) {
	t.Helper()
	m, err := demo.Load(model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := loadTokenizer("")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, special, stops, err := loadTemplate("")
	if err != nil {
		t.Fatal(err)
	}
	return func() *chatSession {
		p := sample.Params{}
		s := &chatSession{m: m, tok: tok, tmpl: tmpl, special: special, stops: stops,
			smp: sample.New(p, m.Config.VocabSize), params: p, maxTokens: maxTokens}
		s.reset()
		return s
	}, tok
}
