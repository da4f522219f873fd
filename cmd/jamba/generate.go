package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/hub"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
	"github.com/jamba-go/jamba/textgen"
)

func init() {
	register(&command{name: "generate", summary: "continue a prompt (text or token ids), streaming the output", run: runGenerate})
	register(&command{name: "run", summary: "generate from a text prompt (the demo model when no --model)", run: runRun})
}

// genFlags are the sampling and length flags shared by generate, run and chat.
type genFlags struct {
	*modelFlags
	maxTokens   *int
	temperature *float64
	topP        *float64
	topK        *int
	minP        *float64
	repPenalty  *float64
	seed        *uint64
	ignoreEOS   *bool
}

func addGenFlags(fs *flag.FlagSet, defMax int, defTemp float64) genFlags {
	return genFlags{
		modelFlags:  addModelFlags(fs, withCache),
		maxTokens:   fs.Int("max-tokens", defMax, "tokens to generate at most"),
		temperature: fs.Float64("temperature", defTemp, "sampling temperature; 0 is greedy"),
		topP:        fs.Float64("top-p", 1, "nucleus sampling: keep the smallest set of tokens with this much probability (1: off)"),
		topK:        fs.Int("top-k", 0, "keep only the K most likely tokens (0: off)"),
		minP:        fs.Float64("min-p", 0, "drop tokens less likely than this fraction of the most likely (0: off)"),
		repPenalty:  fs.Float64("repetition-penalty", 1, "penalise tokens already in the sequence (1: off)"),
		seed:        fs.Uint64("seed", 0, "random seed for sampling (same seed, same output)"),
		ignoreEOS:   fs.Bool("ignore-eos", false, "keep generating past end-of-sequence tokens"),
	}
}

func (g genFlags) params() sample.Params {
	return sample.Params{
		Temperature: float32(*g.temperature), TopP: float32(*g.topP), TopK: *g.topK,
		MinP: float32(*g.minP), RepetitionPenalty: float32(*g.repPenalty), Seed: *g.seed,
	}
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate", "[--model DIR] (--prompt TEXT | --ids 1,2,3) [--max-tokens N] [flags]", `
Continues a prompt with the hybrid cache and streams the new text to stdout as
it is produced. --prompt is encoded with the model's tokenizer.json (with its
special tokens, e.g. BOS); --ids gives the token ids directly. With
--print-ids the last line of stdout is the generated ids, comma-separated.`, stderr)
	g := addGenFlags(fs, 64, 0)
	prompt := fs.String("prompt", "", "prompt text")
	idsFlag := fs.String("ids", "", "prompt token ids, comma-separated")
	printIDs := fs.Bool("print-ids", false, "print the generated ids as the last line of stdout")
	device := addDeviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*prompt == "") == (*idsFlag == "") {
		return fmt.Errorf("%w: give exactly one of --prompt and --ids", errUsage)
	}
	return generate(g, *device, *prompt, *idsFlag, *printIDs, false, stdout, stderr)
}

func runRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[--model DIR] [flags] [PROMPT] | [flags] ORG/NAME PROMPT", `
Generates a continuation of PROMPT and streams it to the terminal. Without
--model it uses the small demo model built into the binary (trained on Go
source code). Without PROMPT it reads the prompt from stdin.

As with ollama, the model can come first: 'jamba run org/name "Hello"'
downloads org/name from the Hugging Face Hub on first use (see 'jamba pull').
A first word of the form org/name followed by more words is taken as a model;
quote a prompt that starts with such a word.

The prompt's last token is healed: a prompt that ends inside a word or with a
space ends with a token that rarely stands alone in training text (a lone
space token, say), so it is dropped and the first generated token must begin
with its text. The output then continues the prompt as written.`, stderr)
	g := addGenFlags(fs, 128, 0.7)
	noHeal := fs.Bool("no-heal", false, "do not heal the prompt's last token (see above)")
	device := addDeviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if *g.model == "" && len(rest) >= 2 && hub.LooksLikeRef(rest[0]) {
		p, err := resolveModelPath(rest[0], stderr)
		if err != nil {
			return err
		}
		*g.model, rest = p, rest[1:]
	}
	prompt := joinArgs(rest)
	if prompt == "" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		prompt = string(data)
	}
	if prompt == "" {
		return fmt.Errorf("%w: no prompt given (pass it as an argument or on stdin)", errUsage)
	}
	return generate(g, *device, prompt, "", false, !*noHeal, stdout, stderr)
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

func generate(g genFlags, device, prompt, idsFlag string, printIDs, heal bool, stdout, stderr io.Writer) error {
	p := g.params()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *g.maxTokens <= 0 {
		return fmt.Errorf("%w: --max-tokens must be positive", errUsage)
	}
	m, err := g.open()
	if err != nil {
		return err
	}
	defer m.Close()
	tok, tokErr := m.Tokenizer()
	var ids []int
	if idsFlag != "" {
		if ids, err = parseIDs(idsFlag); err != nil {
			return err
		}
	} else {
		if tokErr != nil {
			return tokErr
		}
		ids = tok.Encode(prompt, true)
		if len(ids) == 0 {
			return fmt.Errorf("the prompt encodes to no tokens")
		}
	}
	req := engine.Request{Prompt: ids, MaxTokens: *g.maxTokens, Sampling: p, IgnoreEOS: *g.ignoreEOS}
	var ts *textgen.Stream
	if tok != nil {
		healed := ""
		if heal {
			if h, ok := textgen.Heal(tok, ids, m.Config.VocabSize); ok {
				req.Prompt, req.FirstAllowed, healed = h.Prompt, h.Allowed, h.Text
			}
		}
		ts = textgen.NewStream(tok, req.Prompt, nil, false)
		ts.DropPrefix(healed)
	}
	gm, err := onDevice(device, m.Model, g.options(), stderr)
	if err != nil {
		return err
	}
	if gm != nil {
		defer gm.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	start := time.Now()
	var first time.Duration
	var r reply
	if gm != nil {
		r, err = deviceReply(ctx, gm, req, m.Config.VocabSize, ts, out, func() { first = time.Since(start) })
	} else {
		r, err = engineReply(ctx, m.Model, req, *g.maxTokens, ts, out, func() { first = time.Since(start) })
	}
	fmt.Fprintln(out)
	if printIDs {
		fmt.Fprintln(out, joinIDs(r.ids))
	}
	if err != nil {
		return err
	}
	out.Flush() // the text, then the statistics on stderr
	el := time.Since(start)
	if n := len(r.ids); n > 1 {
		fmt.Fprintf(stderr, "[%d prompt tokens, %d generated (%s); prompt %.0f ms, %.1f tokens/s]\n",
			len(req.Prompt), n, r.finish, first.Seconds()*1000, float64(n-1)/(el-first).Seconds())
	}
	return nil
}

// engineReply runs one request through an engine made for it: its context is
// what the request needs, and it keeps nothing for a next one.
func engineReply(ctx context.Context, m *model.Model, req engine.Request, maxTokens int, ts *textgen.Stream, out *bufio.Writer, first func()) (reply, error) {
	eng, err := engine.New(m, engine.Config{MaxBatch: 1, MaxQueue: 1,
		Context: min(len(req.Prompt)+maxTokens, m.Config.MaxPositionEmbeddings), NoPrefixReuse: true})
	if err != nil {
		return reply{}, err
	}
	defer eng.Close()
	return streamReply(ctx, eng, req, ts, out, first)
}
