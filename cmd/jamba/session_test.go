package main

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/model"
)

var sessionTurns = []string{"func add(a, b int) int {", "package main", "// Sum returns", "for i := range n {", "return nil"}

// atSession turns a fresh chat session into one kept in path, as
// `jamba chat --session path` does.
func atSession(t *testing.T, s *chatSession, path string) *chatSession {
	t.Helper()
	s.eng.Close()
	if err := s.start(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.eng.Close() })
	if err := s.openSession(io.Discard); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestChatSessionResume: a greedy chat of five turns, saved after each
// turn and resumed by a new process-like session after the second, gives
// the same replies as one uninterrupted chat, and each resumed turn
// computes exactly the prompt tokens the uninterrupted chat computed for
// it: no token of the history is computed again.
//
// Replies are six tokens long, and re-tokenize otherwise in the next
// turn's prompt (the demo's BPE merges across them): the uninterrupted chat
// continues from its copy of the state at the end of the previous prompt,
// the resumed one from the same state stored beside the whole one. The
// test checks that the uninterrupted chat does continue.
func TestChatSessionResume(t *testing.T) {
	newSession, _ := demoChat(t, 6)
	whole := newSession()
	var want []string
	var wantComputed []int
	for i, u := range sessionTurns {
		var out strings.Builder
		if err := whole.turn(u, &out); err != nil {
			t.Fatal(err)
		}
		want = append(want, out.String())
		wantComputed = append(wantComputed, whole.prompt-whole.cached)
		if i > 0 && whole.cached == 0 {
			t.Fatalf("turn %d: the uninterrupted chat computed its whole history: this test could not see recomputation", i)
		}
	}

	path := filepath.Join(t.TempDir(), "chat.session")
	first := atSession(t, newSession(), path)
	for i, u := range sessionTurns[:2] {
		var out strings.Builder
		if err := first.turn(u, &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != want[i] {
			t.Fatalf("turn %d: %q, uninterrupted %q", i, out.String(), want[i])
		}
		if err := first.autosave(); err != nil {
			t.Fatal(err)
		}
	}
	first.eng.Close()

	resumed := atSession(t, newSession(), path)
	if idx, err := resumed.store.Index(context.Background()); err != nil || len(idx) == 0 || len(resumed.msgs) != len(first.msgs) {
		t.Fatalf("resumed %d states (%v) and %d messages, saved %d messages", len(idx), err, len(resumed.msgs), len(first.msgs))
	}
	for i, u := range sessionTurns[2:] {
		var out strings.Builder
		if err := resumed.turn(u, &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != want[2+i] {
			t.Errorf("resumed turn %d: %q, uninterrupted %q", 2+i, out.String(), want[2+i])
		}
		if c := resumed.prompt - resumed.cached; c != wantComputed[2+i] {
			t.Errorf("resumed turn %d computed %d prompt tokens, the uninterrupted chat %d: %d history tokens computed again", 2+i, c, wantComputed[2+i], c-wantComputed[2+i])
		}
		if err := resumed.autosave(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChatSessionDamagedState: a session whose state files are damaged is
// resumed with a message naming the refusal, and its next turn computes
// the history and answers as an uninterrupted chat does.
func TestChatSessionDamagedState(t *testing.T) {
	newSession, _ := demoChat(t, 6)
	path := filepath.Join(t.TempDir(), "chat.session")
	first := atSession(t, newSession(), path)
	var out strings.Builder
	if err := first.turn(sessionTurns[0], &out); err != nil {
		t.Fatal(err)
	}
	if err := first.autosave(); err != nil {
		t.Fatal(err)
	}
	first.eng.Close()
	files, _ := filepath.Glob(filepath.Join(path+".state", "state-*.jstate"))
	if len(files) == 0 {
		t.Fatal("no state files")
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		data[len(data)-40] ^= 1
		os.WriteFile(f, data, 0o644)
	}
	var msgs strings.Builder
	s := newSession()
	s.errw = &msgs
	resumed := atSession(t, s, path)
	var got strings.Builder
	if err := resumed.turn(sessionTurns[1], &got); err != nil {
		t.Fatal(err)
	}
	if resumed.cached != 0 || !strings.Contains(msgs.String(), "checksum mismatch") {
		t.Errorf("damaged state: %d tokens continued; messages %q", resumed.cached, msgs.String())
	}
	whole := newSession()
	var w1, w2 strings.Builder
	whole.turn(sessionTurns[0], &w1)
	whole.turn(sessionTurns[1], &w2)
	if got.String() != w2.String() {
		t.Errorf("after a damaged state: %q, uninterrupted %q", got.String(), w2.String())
	}
}

// TestChatSessionRefused: a truncated, corrupted, other-version or
// other-model session file is refused with a message saying which, and
// leaves the conversation as it was.
func TestChatSessionRefused(t *testing.T) {
	newSession, _ := demoChat(t, 4)
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
	v3 := append([]byte(nil), good[:len(good)-sha256.Size]...)
	v3[8] = 3
	sum := sha256.Sum256(v3)
	v3 = append(v3, sum[:]...)
	other := newSession()
	other.model = otherModel(t)
	for _, tc := range []struct {
		name string
		s    *chatSession
		path string
		want string
	}{
		{"truncated", newSession(), write("cut.session", good[:len(good)-10]), "checksum does not match"},
		{"corrupted", newSession(), write("flip.session", flipped), "checksum does not match"},
		{"tiny", newSession(), write("tiny.session", good[:12]), "truncated"},
		{"not a session", newSession(), write("other.txt", []byte("hello, this is not a session file at all, no no no")), "not a jamba chat session"},
		{"another version", newSession(), write("v3.session", v3), "format version 3; this jamba reads version 2"},
		{"another model", other, path, "made by another model"},
	} {
		err := tc.s.loadSession(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if len(tc.s.msgs) != 0 {
			t.Errorf("%s: a refused file changed the conversation", tc.name)
		}
	}
}

// otherModel is the demo model with another layer norm epsilon: the same
// shapes, another identity.
func otherModel(t *testing.T) *model.Model {
	newSession, _ := demoChat(t, 1)
	m := *newSession().model
	cfg := *m.Config
	cfg.RMSNormEps *= 2
	m.Config = &cfg
	return &m
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
	if code != 0 || !strings.Contains(stderr, "resumed session "+path+": 1 turns; its state") {
		t.Fatalf("second run: %d %s", code, stderr)
	}
}
