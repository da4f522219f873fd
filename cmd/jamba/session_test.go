package main

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/model"
)

var sessionTurns = []string{"func add(a, b int) int {", "package main", "// Sum returns", "for i := range n {", "return nil"}

// TestChatSessionResume: a greedy chat of five turns saved after the
// second and resumed by a new session gives the same replies as one
// uninterrupted chat, and the resumed session feeds the model only what
// the uninterrupted one fed for the same turns: no token of the history is
// computed again.
//
// Replies are one token long: the state then holds exactly the rendered
// conversation, and each turn of the uninterrupted chat continues it (a
// longer reply need not re-encode to the tokens the model chose, and the
// next turn would start over, in both chats alike, hiding what this test
// looks for). The test checks that the uninterrupted chat does continue.
func TestChatSessionResume(t *testing.T) {
	newSession, _ := demoChat(t, 1)
	whole := newSession()
	var want []string
	var wantFed []int // prompt tokens fed per turn
	for i, u := range sessionTurns {
		var out strings.Builder
		before, history := whole.prefilled, whole.st.Len
		if err := whole.turn(u, &out); err != nil {
			t.Fatal(err)
		}
		want = append(want, out.String())
		wantFed = append(wantFed, whole.prefilled-before)
		if i > 0 && whole.st.Len != history+wantFed[i] {
			t.Fatalf("turn %d: the uninterrupted chat fed %d tokens with %d of history kept: it starts over, and this test could not see recomputation", i, wantFed[i], history)
		}
	}

	path := filepath.Join(t.TempDir(), "chat.session")
	first := newSession()
	for i, u := range sessionTurns[:2] {
		var out strings.Builder
		if err := first.turn(u, &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != want[i] {
			t.Fatalf("turn %d: %q, uninterrupted %q", i, out.String(), want[i])
		}
		if err := first.saveSession(path); err != nil {
			t.Fatal(err)
		}
	}
	resumed := newSession()
	if err := resumed.loadSession(path); err != nil {
		t.Fatal(err)
	}
	if resumed.st.Len != first.st.Len || len(resumed.msgs) != len(first.msgs) {
		t.Fatalf("resumed %d tokens of state and %d messages, saved %d and %d", resumed.st.Len, len(resumed.msgs), first.st.Len, len(first.msgs))
	}
	for i, u := range sessionTurns[2:] {
		var out strings.Builder
		before := resumed.prefilled
		if err := resumed.turn(u, &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != want[2+i] {
			t.Errorf("resumed turn %d: %q, uninterrupted %q", 2+i, out.String(), want[2+i])
		}
		if fed := resumed.prefilled - before; fed != wantFed[2+i] {
			t.Errorf("resumed turn %d fed %d prompt tokens, the uninterrupted chat %d: %d history tokens computed again", 2+i, fed, wantFed[2+i], fed-wantFed[2+i])
		}
	}
}

// TestChatSessionRefused: a truncated, corrupted, other-version or
// other-model session file is refused with a message saying which, and
// leaves the session as it was.
func TestChatSessionRefused(t *testing.T) {
	newSession, _ := demoChat(t, 8)
	s := newSession()
	var out strings.Builder
	if err := s.turn("func main() {", &out); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "good.session")
	if err := s.saveSession(path); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	other := newSession()
	other.m = otherModel(t)
	for _, tc := range []struct {
		name string
		s    *chatSession
		path string
		want string
	}{
		{"truncated", newSession(), write("cut.session", good[:len(good)-100]), "checksum does not match"},
		{"corrupted", newSession(), write("flip.session", flipped), "checksum does not match"},
		{"tiny", newSession(), write("tiny.session", good[:12]), "truncated"},
		{"not a session", newSession(), write("other.txt", []byte("hello, this is not a session file at all, no no no")), "not a jamba chat session"},
		{"another model", other, path, "made by another model"},
	} {
		err := tc.s.loadSession(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if tc.s.st.Len != 0 || len(tc.s.fed) != 0 {
			t.Errorf("%s: a refused file changed the session", tc.name)
		}
	}
	// Another version, with a valid checksum.
	v2 := append([]byte(nil), good[:len(good)-32]...)
	v2[8] = 2
	if err := newSession().loadSession(write("v2.session", appendSum(v2))); err == nil || !strings.Contains(err.Error(), "format version 2; this jamba reads version 1") {
		t.Errorf("version 2: %v", err)
	}
}

func appendSum(b []byte) []byte {
	s := sha256.Sum256(b)
	return append(b, s[:]...)
}

// otherModel is the demo model with one more layer norm epsilon: the same
// shapes, another identity.
func otherModel(t *testing.T) *model.Model {
	m, err := model.LoadDemo(model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := *m.Config
	cfg.RMSNormEps *= 2
	m.Config = &cfg
	return m
}

// TestChatSessionCommand drives jamba chat --session across two runs.
func TestChatSessionCommand(t *testing.T) {
	old := stdin
	defer func() { stdin = old }()
	path := filepath.Join(t.TempDir(), "c.session")
	stdin = strings.NewReader("func main() {\n/exit\n")
	if _, stderr, code := run(t, "chat", "--max-tokens", "6", "--temperature", "0", "--session", path); code != 0 || !strings.Contains(stderr, "new session") {
		t.Fatalf("first run: %d %s", code, stderr)
	}
	stdin = strings.NewReader("more\n/exit\n")
	_, stderr, code := run(t, "chat", "--max-tokens", "6", "--temperature", "0", "--session", path)
	if code != 0 || !strings.Contains(stderr, "resumed session "+path+": 1 turns") {
		t.Fatalf("second run: %d %s", code, stderr)
	}
}
