package textgen

import (
	"strings"
	"testing"

	"github.com/jamba-go/jamba/demo"
)

func TestHeal(t *testing.T) {
	tok, err := demo.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	V := tok.VocabSize()
	ids := tok.Encode("func (s *Server) ", true)
	h, ok := Heal(tok, ids, V)
	if !ok || len(h.Prompt) != len(ids)-1 || h.Text != " " {
		t.Fatalf("healed %v (from %v), text %q", h.Prompt, ids, h.Text)
	}
	dropped, _ := tok.IDToToken(ids[len(ids)-1])
	n := 0
	for id, ok := range h.Allowed {
		p, _ := tok.IDToToken(id)
		if ok != strings.HasPrefix(p, dropped) || (ok && tok.IsSpecial(id)) {
			t.Fatalf("id %d (%q) allowed=%v after dropping %q", id, p, ok, dropped)
		}
		if ok {
			n++
		}
	}
	if n < 2 {
		t.Fatalf("only %d tokens extend %q", n, dropped)
	}
	// A prompt of one token (BOS) is not healed.
	if _, ok := Heal(tok, ids[:1], V); ok {
		t.Error("healed a prompt of one token")
	}

	// The stream drops the healed text once: a first token that repeats
	// it shows only what it adds.
	var first int
	for id, ok := range h.Allowed {
		if p, _ := tok.IDToToken(id); ok && len(p) > len(dropped) {
			first = id
			break
		}
	}
	s := NewStream(tok, h.Prompt, nil, true)
	s.DropPrefix(h.Text)
	got, _ := s.Add(first)
	rest, _ := s.Finish()
	full := tok.Decode(append(append([]int(nil), h.Prompt...), first), true)
	want := strings.TrimPrefix(full, tok.Decode(h.Prompt, true)+h.Text)
	if got+rest != want {
		t.Errorf("after healing, token %d shows %q, want %q", first, got+rest, want)
	}
}
