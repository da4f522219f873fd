package main

import (
	"encoding/json"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jamba-go/jamba/chat"
)

// terminal drives chatSession.interact as a user at a terminal does:
// lines on its stdin, answers read from its stdout, Ctrl-C as a real
// SIGINT to this process.
type terminal struct {
	t      *testing.T
	in     *io.PipeWriter
	out    *gateWriter
	errw   *lockedBuffer
	sig    chan os.Signal
	done   chan error
	marker int // how much of errw the last wait consumed
}

// gateWriter is stdout: it records what is written and, while closed,
// blocks every write after the first (an answer that the test stops
// midway).
type gateWriter struct {
	mu      sync.Mutex
	b       strings.Builder
	started chan struct{} // closed at the first write while gated
	open    chan struct{} // writes pass when closed
	gated   bool
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.b.Write(p)
	gated, open := g.gated, g.open
	if gated {
		select {
		case <-g.started:
		default:
			close(g.started)
		}
	}
	g.mu.Unlock()
	if gated {
		<-open
	}
	return len(p), nil
}

func (g *gateWriter) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.b.String()
}

// gate makes the next write block until the returned func is called.
func (g *gateWriter) gate() (started <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gated, g.started, g.open = true, make(chan struct{}), make(chan struct{})
	open := g.open
	return g.started, func() {
		g.mu.Lock()
		g.gated = false
		g.mu.Unlock()
		close(open)
	}
}

func startTerminal(t *testing.T, s *chatSession) *terminal {
	r, w := io.Pipe()
	term := &terminal{t: t, in: w, out: &gateWriter{}, errw: &lockedBuffer{}, sig: make(chan os.Signal, 2), done: make(chan error, 1)}
	signal.Notify(term.sig, os.Interrupt)
	t.Cleanup(func() {
		signal.Stop(term.sig)
		w.Close()
	})
	go func() { term.done <- s.interact(r, term.out, term.errw, term.sig) }()
	return term
}

func (term *terminal) send(lines ...string) {
	for _, l := range lines {
		if _, err := io.WriteString(term.in, l+"\n"); err != nil {
			term.t.Fatalf("writing %q: %v", l, err)
		}
	}
}

// wait waits until stderr shows s after what earlier waits consumed.
func (term *terminal) wait(s string) {
	term.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		all := term.errw.String()
		if i := strings.Index(all[term.marker:], s); i >= 0 {
			term.marker += i + len(s)
			return
		}
		select {
		case err := <-term.done:
			term.t.Fatalf("the chat ended (%v) before %q:\n%s", err, s, all)
		case <-time.After(5 * time.Millisecond):
		}
	}
	term.t.Fatalf("no %q on stderr:\n%s", s, term.errw.String())
}

// sync returns once every line sent so far has been handled: lines are
// handled in order, so the /help sent now answers after them.
func (term *terminal) sync() {
	term.t.Helper()
	term.send("/help")
	term.wait("begins and ends a message of several lines")
}

// ended waits for interact to return.
func (term *terminal) ended() error {
	term.t.Helper()
	select {
	case err := <-term.done:
		return err
	case <-time.After(30 * time.Second):
		term.t.Fatalf("the chat did not end:\n%s", term.errw.String())
		return nil
	}
}

// readSession returns the messages of a session file.
func readSession(t *testing.T, path string) []sessionMessage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var meta sessionMeta
	if err := json.Unmarshal(data[16:len(data)-32], &meta); err != nil {
		t.Fatal(err)
	}
	return meta.Messages
}

// TestChatTerminalCommands: /help, /set (and its refusals), a """
// message of several lines, /save, /clear, /load and /bye, typed at the
// chat's stdin. The loaded conversation continues from its saved state
// (no token of its history computed again) with the answer a fresh chat
// over the same conversation gives.
func TestChatTerminalCommands(t *testing.T) {
	newSession, _ := demoChat(t, 4)
	dir := t.TempDir()
	session := filepath.Join(dir, "chat.session")
	s := atSession(t, newSession(), session)
	s.params.Temperature = 0.9 // /set makes it greedy
	term := startTerminal(t, s)
	saved := filepath.Join(dir, "saved.session")

	term.send("/help")
	term.wait("/set temperature 0.7")
	term.send("/set temperature 0", "/set top_k many", "/set max_tokens 0", "/set parameter num_predict 6", "/set system be brief", "/set")
	term.wait("(temperature 0)")
	term.wait(`/set top_k many: strconv.Atoi`)
	term.wait("/set max_tokens 0: must be at least 1")
	term.wait("(max_tokens 6)")
	term.wait("(system message set)")
	term.wait("temperature 0\n")
	term.wait("max_tokens 6\n")
	term.send(`"""func add(a, b int) int {`, "\treturn a + b", `}"""`)
	term.sync()
	term.send("/save " + saved)
	term.wait("saved " + saved)
	msgs := readSession(t, saved)
	if len(msgs) != 3 || msgs[0] != (sessionMessage{"system", "be brief"}) || msgs[1] != (sessionMessage{"user", "func add(a, b int) int {\n\treturn a + b\n}"}) || msgs[2].Role != "assistant" {
		t.Fatalf("saved conversation %q", msgs)
	}
	if files, _ := filepath.Glob(filepath.Join(saved+".state", "state-*.jstate")); len(files) != 2 {
		t.Fatalf("saved state files %v (want the whole state and the prompt's)", files)
	}

	stateFiles := func() []string {
		files, _ := filepath.Glob(filepath.Join(session+".state", "state-*.jstate"))
		return files
	}
	if len(stateFiles()) == 0 {
		t.Fatal("no state in the session's folder after a turn")
	}
	term.send("/clear")
	term.wait("(conversation cleared)")
	if f := stateFiles(); len(f) != 0 {
		t.Errorf("after /clear the session's folder holds %v", f)
	}
	if m := readSession(t, session); len(m) != 1 {
		t.Errorf("after /clear the session file holds %q", m)
	}
	if len(s.msgs) != 1 || role(s.msgs[0]) != "system" {
		t.Errorf("after /clear: %q, want the system message alone", s.msgs)
	}
	term.send("/load " + filepath.Join(dir, "missing"))
	term.wait("no such file")
	term.send("/load " + saved)
	term.wait("loaded " + saved + ": 1 turns")
	answers := term.out.String()
	term.send(`"""`, "package main", "", `"""`)
	term.sync()
	got := strings.TrimPrefix(term.out.String(), answers)
	// The saved state holds at least the first prompt: none of it is
	// computed again.
	if first := len(mustEncode(t, s, 2)); s.cached < first {
		t.Errorf("the turn after /load continued %d tokens of %d, want at least the saved prompt's %d", s.cached, s.prompt, first)
	}
	term.send("/bye")
	if err := term.ended(); err != nil {
		t.Fatal(err)
	}

	fresh := newSession()
	fresh.params.Temperature, fresh.maxTokens = 0, 6
	for _, m := range msgs {
		fresh.msgs = append(fresh.msgs, chat.NewMessage(m.Role, m.Content))
	}
	var want strings.Builder
	if err := fresh.turn("package main\n", &want); err != nil {
		t.Fatal(err)
	}
	if got != want.String() {
		t.Errorf("answer after /load %q, a fresh chat over the same conversation %q", got, want.String())
	}
	if last := readSession(t, session); len(last) != 5 || last[3] != (sessionMessage{"user", "package main\n"}) {
		t.Errorf("the conversation after the quoted message: %q", last)
	}
}

// mustEncode is the prompt of the conversation's first n messages.
func mustEncode(t *testing.T, s *chatSession, n int) []int {
	t.Helper()
	keep := s.msgs
	s.msgs = s.msgs[:n]
	ids, err := s.encode(true)
	s.msgs = keep
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestChatTerminalCtrlC: a SIGINT while an answer is being written stops
// it and keeps the part written (a prefix of the uninterrupted answer) in
// the conversation, and the chat goes on; at the prompt, one SIGINT says
// how to leave and a second leaves. End of input (Ctrl-D) leaves too.
func TestChatTerminalCtrlC(t *testing.T) {
	guard := make(chan os.Signal, 1) // SIGINT never reaches the default action
	signal.Notify(guard, os.Interrupt)
	defer signal.Stop(guard)

	newSession, _ := demoChat(t, 1000)
	var full strings.Builder
	if err := newSession().turn("func main() {", &full); err != nil {
		t.Fatal(err)
	}
	if len(full.String()) < 1000 {
		t.Fatalf("the uninterrupted answer is %d bytes: too short to stop midway", full.Len())
	}

	s := newSession()
	term := startTerminal(t, s)
	started, release := term.out.gate()
	term.send("func main() {")
	<-started
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	time.Sleep(50 * time.Millisecond) // the engine sees the cancellation
	release()
	term.wait("(answer stopped)")
	term.wait("> ")
	if len(s.msgs) != 2 {
		t.Fatalf("after the stop the conversation holds %d messages", len(s.msgs))
	}
	part, _ := s.msgs[1].Get("content")
	if p := part.(string); p == "" || len(p) >= len(strings.TrimSpace(full.String())) || !strings.HasPrefix(strings.TrimSpace(full.String()), p) {
		t.Fatalf("kept answer %q: not a proper prefix of the uninterrupted one (%d bytes)", p, full.Len())
	}

	term.send("/set max_tokens 2", "more")
	term.wait("(max_tokens 2)")
	term.sync()
	if len(s.msgs) != 4 {
		t.Fatalf("the turn after the stop: %d messages", len(s.msgs))
	}
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	term.wait("Ctrl-C again")
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	if err := term.ended(); err != nil {
		t.Fatal(err)
	}

	eof := startTerminal(t, newSession())
	eof.in.Close()
	if err := eof.ended(); err != nil {
		t.Fatal(err)
	}
}
