package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/cuda"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
	"github.com/jamba-go/jamba/textgen"
	"github.com/jamba-go/jamba/tokenizer"
)

func init() {
	register(&command{name: "chat", summary: "chat with a model in the terminal, using its chat template", run: runChat})
}

func runChat(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chat", "[--model DIR] [--system TEXT] [--session FILE] [flags]", `
An interactive chat in the terminal. Each line you type is a user message;
the conversation is rendered with the model's chat template (the
chat_template of tokenizer_config.json; a plain "role: content" transcript
for models without one) and the answer streams as it is generated. Turns
run through the same engine as 'jamba serve': the state of the previous
turn is kept, so only the new part of the conversation is computed (from
the copy taken at the end of the previous prompt when the earlier answer
re-tokenizes differently), and an answer ends where the earliest stop
string completes.

A message of several lines starts with """ and ends with a line that ends
with """. Ctrl-C stops the answer being written and keeps what came of it;
at the prompt, a second Ctrl-C (or Ctrl-D, or /bye) leaves. Commands:
`+chatCommandList+`
With --session FILE the conversation is kept in FILE and the model's state
in FILE.state/, saved after every turn; running the same command again
resumes it without computing the history again.`, stderr)
	g := addGenFlags(fs, 512, 0.7)
	system := fs.String("system", "", "system message")
	sessionPath := fs.String("session", "", "keep the conversation in this file and the model's state in FILE.state/, saved after every turn; an existing session is resumed without computing its history again (with --device cuda the state is not saved: a resumed session computes its history)")
	device := addDeviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p := g.params()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	m, err := g.open()
	if err != nil {
		return err
	}
	defer m.Close()
	gm, err := onDevice(*device, m.Model, g.options(), stderr)
	if err != nil {
		return err
	}
	var be engine.Backend
	if gm != nil {
		defer gm.Close() // after the engine's Close
		be = cuda.EngineBackend(gm)
	}
	tok, err := m.Tokenizer()
	if err != nil {
		return err
	}
	tmpl, special, stops, err := loadTemplate(m.Dir)
	if err != nil {
		return err
	}
	s := &chatSession{tok: tok, tmpl: tmpl, special: special, stops: stops, params: p, maxTokens: *g.maxTokens, system: *system, model: m.Model, backend: be, errw: stderr}
	if err := s.start(*sessionPath); err != nil {
		return err
	}
	defer s.eng.Close()
	s.reset()
	if *sessionPath != "" {
		if err := s.openSession(stderr); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	fmt.Fprintf(stderr, "chatting with %s; /help for commands, /bye to leave\n", m.Name)
	return s.interact(stdin, stdout, stderr, sig)
}

// chatCommandList is the /help text.
const chatCommandList = `  /help, /?                 this list
  /bye (/exit, /quit)       leave
  /clear (/reset)           start over: forget the conversation and its state
  /set                      show the settings
  /set temperature 0.7      also top_p, top_k, min_p, repetition_penalty,
                            seed, max_tokens (ollama's /set parameter NAME
                            VALUE and num_predict, repeat_penalty work too)
  /set system TEXT          the system message (none: /set system)
  /save FILE                save the conversation and its state to FILE
                            (the --session format)
  /load FILE                continue the conversation saved in FILE
  """                       begins and ends a message of several lines
`

// interact reads the user's lines from in until /bye, end of input or a
// second Ctrl-C at the prompt (a value on sig), and runs each message as
// a turn; a value on sig during a turn stops it.
func (s *chatSession) interact(in io.Reader, stdout, stderr io.Writer, sig <-chan os.Signal) error {
	lines := make(chan string)
	stop := make(chan struct{})
	defer close(stop)
	var readErr error
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(in, 64<<10)
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				select {
				case lines <- strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r"):
				case <-stop:
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				return
			}
		}
	}()
	var multi []string // the lines of a """ message so far
	inMulti := false
	interrupts := 0
	for {
		if inMulti {
			fmt.Fprint(stderr, "... ")
		} else {
			fmt.Fprint(stderr, "> ")
		}
		var line string
		select {
		case l, ok := <-lines:
			if !ok {
				fmt.Fprintln(stderr)
				return readErr
			}
			line = l
			interrupts = 0
		case <-sig:
			if inMulti {
				multi, inMulti = nil, false
				fmt.Fprintln(stderr, "\n(message discarded)")
				continue
			}
			interrupts++
			if interrupts >= 2 {
				fmt.Fprintln(stderr)
				return nil
			}
			fmt.Fprintln(stderr, "\n(Ctrl-C again, Ctrl-D or /bye to leave)")
			continue
		}

		if inMulti {
			if rest, ok := strings.CutSuffix(line, `"""`); ok {
				multi = append(multi, rest)
				// The lines of the quotes themselves, when empty, are not
				// part of the message.
				if multi[0] == "" {
					multi = multi[1:]
				}
				if n := len(multi); n > 0 && multi[n-1] == "" {
					multi = multi[:n-1]
				}
				line, multi, inMulti = strings.Join(multi, "\n"), nil, false
			} else {
				multi = append(multi, line)
				continue
			}
		} else if rest, ok := strings.CutPrefix(strings.TrimLeft(line, " \t"), `"""`); ok {
			if body, ok := strings.CutSuffix(rest, `"""`); ok && len(rest) >= 3 {
				line = body
			} else {
				multi, inMulti = []string{rest}, true
				continue
			}
		} else {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "/") {
				quit, err := s.command(line, stderr)
				if err != nil {
					return err
				}
				if quit {
					return nil
				}
				continue
			}
		}
		if strings.TrimSpace(line) == "" {
			continue
		}

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			select {
			case <-sig:
				cancel()
			case <-done:
			}
		}()
		err := s.turnContext(ctx, line, stdout)
		close(done)
		cancel()
		switch {
		case errors.Is(err, context.Canceled):
			fmt.Fprintln(stdout)
			fmt.Fprintln(stderr, "(answer stopped)")
			err = nil
		case errors.Is(err, engine.ErrInvalidRequest):
			fmt.Fprintln(stderr, err) // the conversation outgrew the context
			continue
		}
		if err != nil {
			return err
		}
		if err := s.autosave(); err != nil {
			return err
		}
	}
}

// command runs a /command line; quit is true for /bye. Mistakes are
// reported on w and the chat goes on; err is an error that ends it.
func (s *chatSession) command(line string, w io.Writer) (quit bool, err error) {
	name, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	switch name {
	case "/bye", "/exit", "/quit":
		return true, nil
	case "/help", "/?":
		fmt.Fprint(w, chatCommandList)
	case "/clear", "/reset":
		if err := s.clear(); err != nil {
			return false, err
		}
		fmt.Fprintln(w, "(conversation cleared)")
	case "/set":
		if err := s.set(arg, w); err != nil {
			fmt.Fprintln(w, err)
		}
		return false, s.autosave()
	case "/save":
		if arg == "" {
			fmt.Fprintln(w, "/save needs a file name")
			return false, nil
		}
		if err := s.saveAs(arg); err != nil {
			fmt.Fprintln(w, err)
			return false, nil
		}
		fmt.Fprintf(w, "saved %s\n", arg)
	case "/load":
		if arg == "" {
			fmt.Fprintln(w, "/load needs a file name")
			return false, nil
		}
		if err := s.load(arg); err != nil {
			fmt.Fprintln(w, err)
			return false, nil
		}
		fmt.Fprintf(w, "loaded %s: %d turns\n", arg, s.turns())
		return false, s.autosave()
	default:
		fmt.Fprintf(w, "unknown command %s; /help lists them\n", name)
	}
	return false, nil
}

// chatSettings names the settings /set changes.
var chatSettings = map[string]string{
	"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
	"repetition_penalty": "repetition_penalty", "repeat_penalty": "repetition_penalty",
	"seed": "seed", "max_tokens": "max_tokens", "num_predict": "max_tokens",
}

// set changes a setting: "NAME VALUE", "parameter NAME VALUE" or
// "system TEXT"; with no argument it lists them.
func (s *chatSession) set(arg string, w io.Writer) error {
	if arg == "" {
		p := s.params
		fmt.Fprintf(w, "temperature %g\ntop_p %g\ntop_k %d\nmin_p %g\nrepetition_penalty %g\nseed %d\nmax_tokens %d\nsystem %q\n",
			p.Temperature, p.TopP, p.TopK, p.MinP, p.RepetitionPenalty, p.Seed, s.maxTokens, s.system)
		return nil
	}
	name, value, _ := strings.Cut(arg, " ")
	if name == "system" {
		s.setSystem(strings.TrimSpace(value))
		fmt.Fprintln(w, "(system message set)")
		return nil
	}
	if name == "parameter" {
		name, value, _ = strings.Cut(strings.TrimSpace(value), " ")
	}
	value = strings.TrimSpace(value)
	key, ok := chatSettings[name]
	if !ok || value == "" {
		return fmt.Errorf("usage: /set NAME VALUE, NAME one of temperature, top_p, top_k, min_p, repetition_penalty, seed, max_tokens; or /set system TEXT")
	}
	p, maxTokens := s.params, s.maxTokens
	var err error
	var f float64
	switch key {
	case "top_k":
		p.TopK, err = strconv.Atoi(value)
	case "seed":
		p.Seed, err = strconv.ParseUint(value, 10, 64)
	case "max_tokens":
		maxTokens, err = strconv.Atoi(value)
		if err == nil && maxTokens < 1 {
			err = errors.New("must be at least 1")
		}
	default:
		f, err = strconv.ParseFloat(value, 32)
		switch key {
		case "temperature":
			p.Temperature = float32(f)
		case "top_p":
			p.TopP = float32(f)
		case "min_p":
			p.MinP = float32(f)
		case "repetition_penalty":
			p.RepetitionPenalty = float32(f)
		}
	}
	if err == nil {
		// The zero top_p and repetition_penalty mean "off" (engine.Validate).
		v := p
		if v.TopP == 0 {
			v.TopP = 1
		}
		if v.RepetitionPenalty == 0 {
			v.RepetitionPenalty = 1
		}
		err = v.Validate()
	}
	if err != nil {
		return fmt.Errorf("/set %s %s: %v", name, value, err)
	}
	s.params, s.maxTokens = p, maxTokens
	fmt.Fprintf(w, "(%s %s)\n", key, value)
	return nil
}

// setSystem replaces the system message of the conversation (none when
// text is empty).
func (s *chatSession) setSystem(text string) {
	s.system = text
	has := len(s.msgs) > 0 && role(s.msgs[0]) == "system"
	switch {
	case has && text == "":
		s.msgs = slices.Delete(s.msgs, 0, 1)
	case has:
		s.msgs[0] = chat.NewMessage("system", text)
	case text != "":
		s.msgs = slices.Insert(s.msgs, 0, chat.NewMessage("system", text))
	}
}

func role(m chat.Message) string {
	v, _ := m.Get("role")
	r, _ := v.(string)
	return r
}

// turns is the number of user messages.
func (s *chatSession) turns() int {
	n := 0
	for _, m := range s.msgs {
		if role(m) == "user" {
			n++
		}
	}
	return n
}

// loadTemplate finds the chat template of the model in dir, falling back to
// chat.Default. stops are texts that end an assistant turn for the fallback
// transcript format (which has no end-of-turn token).
func loadTemplate(dir string) (*chat.Template, map[string]string, []string, error) {
	if isGGUF(dir) {
		t, special, err := ggufTemplate(dir)
		if err != nil || t != nil {
			return t, special, nil, err
		}
	} else if dir != "" {
		t, special, err := chat.FromTokenizerConfig(filepath.Join(dir, "tokenizer_config.json"))
		if err == nil {
			return t, special, nil, nil
		}
		if !errors.Is(err, chat.ErrNoTemplate) && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, err
		}
	}
	return chat.Default(), nil, []string{"\nuser:", "\nsystem:"}, nil
}

// newChatEngine starts the engine of a chat: one slot whose state, and its
// copies of the Mamba state at the end of every prompt, the next turn
// continues from; store keeps them beyond the engine (the session). On a
// backend other than the CPU's (be) the states stay in its memory: store
// is not used.
func newChatEngine(m *model.Model, be engine.Backend, store engine.StateStore, errw io.Writer) (*engine.Engine, error) {
	cfg := engine.Config{MaxBatch: 1, MaxQueue: 1}
	if store != nil && be == nil {
		cfg.Store = store
		cfg.OnStoreError = func(err error) {
			if errw != nil {
				fmt.Fprintf(errw, "(%v: the history is computed again)\n", err)
			}
		}
	}
	return engine.NewOn(m, be, cfg)
}

// chatSession is one conversation, generated by an engine whose slot keeps
// the state of the previous turns.
type chatSession struct {
	eng       *engine.Engine
	tok       *tokenizer.Tokenizer
	tmpl      *chat.Template
	special   map[string]string
	stops     []string
	params    sample.Params
	maxTokens int
	system    string

	msgs   []chat.Message
	prompt int // tokens of the last turn's prompt
	cached int // of those, continued from the engine's state instead of computed

	path  string       // the session file (--session), or ""
	model *model.Model // for the session's identity and its engine
	// backend computes the model when it is not on the CPU (--device
	// cuda): the states are not saved then.
	backend engine.Backend
	store   *chatStore // the states of the session and of a /load
	errw    io.Writer  // for the store's messages
}

func (s *chatSession) reset() {
	s.msgs = s.msgs[:0]
	if s.system != "" {
		s.msgs = append(s.msgs, chat.NewMessage("system", s.system))
	}
}

// encode renders the conversation and returns its ids. Only the template's
// markup becomes special tokens: control-token text typed in a message
// stays text. Templates put the BOS token in the text themselves when they
// have one; the fallback transcript gets the tokenizer's.
func (s *chatSession) encode(addGen bool) ([]int, error) {
	in := chat.Input{Messages: s.msgs, AddGenerationPrompt: addGen}
	if s.special != nil {
		in.BOS, in.EOS = s.special["bos_token"], s.special["eos_token"]
	}
	ids, _, err := s.tmpl.Encode(s.tok, in, s.special == nil)
	return ids, err
}

// turn adds a user message, generates the answer and streams it to w. The
// whole conversation is rendered each turn; the engine continues from the
// state of the tokens it shares with the previous turn's (all of them
// when the earlier answer re-tokenizes as it was generated, else the copy
// taken at the end of the previous prompt), so only the rest is computed.
func (s *chatSession) turn(user string, w io.Writer) error {
	return s.turnContext(context.Background(), user, w)
}

// turnContext is turn, stopped when ctx ends: the part of the answer
// written by then is kept in the conversation (the user message alone is
// dropped when there is none), and ctx's error returned.
func (s *chatSession) turnContext(ctx context.Context, user string, w io.Writer) error {
	s.msgs = append(s.msgs, chat.NewMessage("user", user))
	ids, err := s.encode(true)
	if err != nil {
		s.msgs = s.msgs[:len(s.msgs)-1]
		return err
	}
	var answer strings.Builder
	out := bufio.NewWriter(io.MultiWriter(w, &answer))
	req := engine.Request{Prompt: ids, MaxTokens: s.maxTokens, Sampling: s.params}
	r, err := streamReply(ctx, s.eng, req, textgen.NewStream(s.tok, ids, s.stops, true), out, nil)
	s.prompt, s.cached = len(ids), r.cached
	text := strings.TrimSpace(answer.String())
	if err != nil {
		if errors.Is(err, context.Canceled) && text != "" {
			s.msgs = append(s.msgs, chat.NewMessage("assistant", text))
		} else {
			s.msgs = s.msgs[:len(s.msgs)-1]
		}
		return err
	}
	fmt.Fprintln(w)
	s.msgs = append(s.msgs, chat.NewMessage("assistant", text))
	return nil
}
