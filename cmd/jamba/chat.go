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
	"strings"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
	"github.com/jamba-go/jamba/tokenizer"
)

func init() {
	register(&command{name: "chat", summary: "chat with a model in the terminal, using its chat template", run: runChat})
}

func runChat(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chat", "[--model DIR] [--system TEXT] [flags]", `
An interactive chat in the terminal. Each line you type is a user message;
the conversation is rendered with the model's chat template (the
chat_template of tokenizer_config.json; a plain "role: content" transcript
for models without one) and the answer streams as it is generated. The hybrid
cache is kept between turns, so only the new part of the conversation is
processed. Commands: /reset starts over, /exit (or end of input) quits.`, stderr)
	g := addGenFlags(fs, 512, 0.7)
	system := fs.String("system", "", "system message")
	sessionPath := fs.String("session", "", "keep the conversation and the model's state in this file, saved after every turn; an existing file is resumed without computing its history again")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p := g.params()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	m, err := loadModel(*g.model, g.options(), stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := loadTokenizer(*g.model)
	if err != nil {
		return err
	}
	tmpl, special, stops, err := loadTemplate(*g.model)
	if err != nil {
		return err
	}
	s := &chatSession{m: m, tok: tok, tmpl: tmpl, special: special, stops: stops, smp: sample.New(p, m.Config.VocabSize), params: p, maxTokens: *g.maxTokens, system: *system}
	s.reset()
	if *sessionPath != "" {
		if err := s.openSession(*sessionPath, stderr); err != nil {
			return err
		}
	}
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	fmt.Fprintf(stderr, "chatting with %s; /reset to start over, /exit to quit\n", modelName(*g.model))
	for {
		fmt.Fprint(stderr, "> ")
		if !in.Scan() {
			fmt.Fprintln(stderr)
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch line {
		case "":
			continue
		case "/exit", "/quit":
			return nil
		case "/reset":
			s.reset()
			if err := s.autosave(*sessionPath); err != nil {
				return err
			}
			continue
		}
		if err := s.turn(line, stdout); err != nil {
			if errors.Is(err, context.Canceled) {
				fmt.Fprintln(stdout, "\n[interrupted]")
				continue
			}
			return err
		}
		if err := s.autosave(*sessionPath); err != nil {
			return err
		}
	}
}

func modelName(dir string) string {
	if dir == "" {
		return "the demo model"
	}
	return filepath.Base(filepath.Clean(dir))
}

// loadTemplate finds the chat template of the model in dir, falling back to
// chat.Default. stops are texts that end an assistant turn for the fallback
// transcript format (which has no end-of-turn token).
func loadTemplate(dir string) (*chat.Template, map[string]string, []string, error) {
	if dir != "" {
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

// chatSession is one conversation and the cache that has consumed it.
type chatSession struct {
	m         *model.Model
	tok       *tokenizer.Tokenizer
	tmpl      *chat.Template
	special   map[string]string
	stops     []string
	smp       *sample.Sampler
	params    sample.Params
	maxTokens int
	system    string

	msgs []chat.Message
	ws   *model.Workspace
	st   *cache.Seq
	fed  []int // the ids st has consumed

	prefilled int // prompt tokens fed to the model, over the whole session
}

func (s *chatSession) reset() {
	s.msgs = s.msgs[:0]
	if s.system != "" {
		s.msgs = append(s.msgs, chat.NewMessage("system", s.system))
	}
	if s.ws == nil {
		s.ws = s.m.NewWorkspace()
		s.st = s.m.NewCache(0)
	}
	s.st.Reset()
	s.fed = s.fed[:0]
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

// turn adds a user message, generates the answer and streams it to w.
func (s *chatSession) turn(user string, w io.Writer) error {
	s.msgs = append(s.msgs, chat.NewMessage("user", user))
	ids, err := s.encode(true)
	if err != nil {
		return err
	}
	// The conversation is re-rendered each turn; when the cache has consumed
	// a prefix of it, only the rest is fed. Mamba state cannot be rewound, so
	// any other difference restarts from an empty state.
	if len(s.fed) == 0 || len(s.fed) >= len(ids) || !slices.Equal(s.fed, ids[:len(s.fed)]) {
		s.st.Reset()
		s.fed = s.fed[:0]
	}
	newIDs := ids[len(s.fed):]
	s.prefilled += len(newIDs)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s.smp.Reset(s.params)
	dec := s.tok.NewStreamDecoder(true)
	dec.Prime(ids)
	var answer strings.Builder
	held := ""
	gen, _, err := s.m.Continue(ctx, s.ws, s.st, newIDs, model.GenerateOptions{MaxTokens: s.maxTokens, Sampler: s.smp}, func(id int) error {
		delta := dec.Add(id)
		answer.WriteString(delta)
		held += delta
		for _, stopText := range s.stops {
			if i := strings.Index(held, stopText); i >= 0 {
				fmt.Fprint(w, held[:i])
				held = ""
				return errStopText
			}
		}
		// Print all but a tail that could still become a stop text.
		keep := 0
		for _, stopText := range s.stops {
			for k := min(len(stopText)-1, len(held)); k > keep; k-- {
				if strings.HasSuffix(held, stopText[:k]) {
					keep = k
					break
				}
			}
		}
		fmt.Fprint(w, held[:len(held)-keep])
		held = held[len(held)-keep:]
		return nil
	})
	stopped := errors.Is(err, errStopText)
	if err != nil && !stopped {
		s.st.Reset()
		s.fed = s.fed[:0]
		return err
	}
	s.fed = append(append(s.fed[:0], ids...), gen[:max(len(gen)-1, 0)]...)
	if !stopped {
		fmt.Fprint(w, held+dec.Flush())
	}
	fmt.Fprintln(w)
	reply := answer.String()
	for _, stopText := range s.stops {
		if i := strings.Index(reply, stopText); i >= 0 {
			reply = reply[:i]
		}
	}
	s.msgs = append(s.msgs, chat.NewMessage("assistant", strings.TrimSpace(reply)))
	return nil
}

var errStopText = errors.New("stop text reached")
