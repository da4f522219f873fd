package main

import (
	"strings"
	"testing"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// TestChatKeepsCache checks that a second turn feeds only the new part of
// the conversation and that its answer equals a fresh run over the whole
// rendered conversation.
func TestChatKeepsCache(t *testing.T) {
	m, err := model.LoadDemo(model.Options{})
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
	newSession := func() *chatSession {
		p := sample.Params{}
		s := &chatSession{m: m, tok: tok, tmpl: tmpl, special: special, stops: stops, smp: sample.New(p, m.Config.VocabSize), params: p, maxTokens: 16}
		s.reset()
		return s
	}
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
