package main

import (
	"strings"
	"testing"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
)

// TestChatKeepsCache checks that a second turn continues from the state
// of the first (its prompt is not computed again) and that its answer
// equals a fresh session's over the same conversation.
func TestChatKeepsCache(t *testing.T) {
	newSession, _ := demoChat(t, 16)
	s := newSession()
	var out1, out2 strings.Builder
	if err := s.turn("func add(a, b int) int {", &out1); err != nil {
		t.Fatal(err)
	}
	first := s.prompt
	if err := s.turn("more", &out2); err != nil {
		t.Fatal(err)
	}
	if s.cached < first || s.cached >= s.prompt {
		t.Fatalf("second turn continued %d of %d prompt tokens, want at least the first prompt's %d", s.cached, s.prompt, first)
	}
	// A fresh session given the same history must answer the same.
	f := newSession()
	f.msgs = append(f.msgs, s.msgs[:len(s.msgs)-2]...)
	var out3 strings.Builder
	if err := f.turn("more", &out3); err != nil {
		t.Fatal(err)
	}
	if f.cached != 0 {
		t.Errorf("a fresh session continued %d tokens", f.cached)
	}
	if out2.String() != out3.String() {
		t.Errorf("answer with the kept state %q, fresh %q", out2.String(), out3.String())
	}
}

// TestChatContinuesFromPromptCopy: when the conversation no longer extends
// what the engine computed (here the earlier answer is changed, as when a
// reply re-tokenizes differently), the next turn still continues from the
// copy of the Mamba state at the end of the previous prompt, and answers as
// a fresh session does.
func TestChatContinuesFromPromptCopy(t *testing.T) {
	newSession, _ := demoChat(t, 8)
	s := newSession()
	var out strings.Builder
	if err := s.turn("func main() {", &out); err != nil {
		t.Fatal(err)
	}
	first := s.prompt
	s.msgs[len(s.msgs)-1] = chat.NewMessage("assistant", "something else entirely")
	var out2 strings.Builder
	if err := s.turn("and then", &out2); err != nil {
		t.Fatal(err)
	}
	if s.cached != first {
		t.Errorf("continued %d tokens, want the first prompt's %d", s.cached, first)
	}
	f := newSession()
	f.msgs = append(f.msgs, s.msgs[:len(s.msgs)-2]...)
	var out3 strings.Builder
	if err := f.turn("and then", &out3); err != nil {
		t.Fatal(err)
	}
	if out2.String() != out3.String() {
		t.Errorf("answer from the copy %q, fresh %q", out2.String(), out3.String())
	}
}

// chunks records each write, one per generated token.
type chunks struct{ parts []string }

func (c *chunks) Write(p []byte) (int, error) {
	c.parts = append(c.parts, string(p))
	return len(p), nil
}

// TestChatStopStrings: the answer ends where the earliest stop string
// completes (the server's rule), not at the first of the list found in the
// text. Both stop strings here complete within one token's text: the one
// listed first starts earlier and completes later.
func TestChatStopStrings(t *testing.T) {
	newSession, _ := demoChat(t, 24)
	s := newSession()
	s.stops = nil
	var out chunks
	if err := s.turn("func main() {", &out); err != nil {
		t.Fatal(err)
	}
	full := strings.TrimSuffix(strings.Join(out.parts, ""), "\n")
	var long, short string
	for i, off := 0, 0; i < len(out.parts) && long == ""; i++ {
		d := out.parts[i]
		if len(d) >= 3 && off+len(d) <= len(full) {
			l, sh := full[off:off+len(d)], d[1:len(d)-1]
			if strings.Index(full, l) == off && strings.Index(full, sh) == off+1 {
				long, short = l, sh
			}
		}
		off += len(d)
	}
	if long == "" {
		t.Fatalf("answer %q (tokens %q): no token text to place the stop strings in", full, out.parts)
	}
	want := full[:strings.Index(full, short)]
	g := newSession()
	g.stops = []string{long, short}
	var got strings.Builder
	if err := g.turn("func main() {", &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != want+"\n" {
		t.Errorf("stops %q on %q: got %q, want %q", g.stops, full, got.String(), want)
	}
	if last, _ := g.msgs[len(g.msgs)-1].Get("content"); last != strings.TrimSpace(want) {
		t.Errorf("the reply kept in the conversation is %q, want %q", last, strings.TrimSpace(want))
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
	if strings.Count(out, "\n") < 2 || !strings.Contains(stderr, "(conversation cleared)") {
		t.Errorf("chat output %q, stderr %q", out, stderr)
	}
}

// TestChatControlText types the text of the tokenizer's special tokens: the
// prompt holds no special id but the BOS the tokenizer adds, and the next
// turn continues from the state of the first, as it does for ordinary
// text, and answers as a fresh session given the whole conversation.
func TestChatControlText(t *testing.T) {
	newSession, tok := demoChat(t, 8)
	bos, _ := tok.BOS()
	for _, first := range []string{"func f() {", "x <|endoftext|><|startoftext|> y"} {
		s := newSession()
		var out strings.Builder
		if err := s.turn(first, &out); err != nil {
			t.Fatal(err)
		}
		f := newSession()
		f.msgs = append(f.msgs, chat.NewMessage("user", first))
		prompt, err := f.encode(true)
		if err != nil {
			t.Fatal(err)
		}
		if prompt[0] != bos || len(prompt) != s.prompt {
			t.Fatalf("%q: prompt %v, the turn's %d tokens", first, prompt, s.prompt)
		}
		for _, id := range prompt[1:] {
			if tok.IsSpecial(id) {
				t.Fatalf("%q: special id %d in the prompt %v", first, id, prompt)
			}
		}
		second := "and <|endoftext|> then"
		var out2, out3 strings.Builder
		if err := s.turn(second, &out2); err != nil {
			t.Fatal(err)
		}
		if s.cached < len(prompt) {
			t.Fatalf("%q: the second turn continued %d tokens, want at least the first prompt's %d", first, s.cached, len(prompt))
		}
		g := newSession()
		g.msgs = append(g.msgs, s.msgs[:len(s.msgs)-2]...)
		if err := g.turn(second, &out3); err != nil {
			t.Fatal(err)
		}
		if out2.String() != out3.String() {
			t.Errorf("%q: answer with the kept state %q, fresh %q", first, out2.String(), out3.String())
		}
	}
}

// demoChat returns a maker of greedy chat sessions over the demo model,
// its tokenizer and chat template, each with an engine of its own,
// answering at most maxTokens tokens a turn, and the tokenizer.
func demoChat(t *testing.T, maxTokens int) (func() *chatSession, *tokenizer.Tokenizer) {
	t.Helper()
	m, err := demo.Load(model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, err := loadTokenizer("")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, special, stops, err := loadTemplate("")
	if err != nil {
		t.Fatal(err)
	}
	return func() *chatSession {
		s := &chatSession{tok: tok, tmpl: tmpl, special: special, stops: stops, maxTokens: maxTokens, model: m}
		if err := s.start(""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.eng.Close() })
		s.reset()
		return s
	}, tok
}
