package main

import (
	"strings"
	"testing"

	"github.com/jamba-go/jamba/model"
)

func TestHealPrompt(t *testing.T) {
	tok, err := loadTokenizer("")
	if err != nil {
		t.Fatal(err)
	}
	V := tok.VocabSize()
	ids := tok.Encode("func (s *Server) ", true)
	healed, allowed, text := healPrompt(tok, ids, V)
	if allowed == nil || len(healed) != len(ids)-1 || text != " " {
		t.Fatalf("healed %v (from %v), text %q", healed, ids, text)
	}
	dropped, _ := tok.IDToToken(ids[len(ids)-1])
	n := 0
	for id, ok := range allowed {
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
	if _, a, _ := healPrompt(tok, ids[:1], V); a != nil {
		t.Error("healed a prompt of one token")
	}

	// The first sample is restricted, the next ones are not.
	logits := make([]float32, V)
	banned := -1
	for id, ok := range allowed {
		if !ok {
			banned = id
			break
		}
	}
	logits[banned] = 100
	h := &healSampler{inner: model.Greedy{}, allowed: allowed}
	if first := h.Sample(logits); !allowed[first] {
		t.Errorf("first sample %d is not allowed", first)
	}
	if logits[banned] != 100 {
		t.Error("the caller's logits were modified")
	}
	if second := h.Sample(logits); second != banned {
		t.Errorf("second sample %d, want the unrestricted argmax %d", second, banned)
	}

	// Through the command: the continuation follows the prompt as written.
	out, stderr, code := run(t, "run", "--temperature", "0", "--max-tokens", "6", "// Package ht")
	if code != 0 {
		t.Fatalf("run failed: %s", stderr)
	}
	if strings.TrimSpace(out) == "" {
		t.Errorf("empty continuation %q", out)
	}
}
