package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
	"github.com/jamba-go/jamba/tokenizer"
)

func init() {
	register(&command{name: "generate", summary: "continue a prompt (text or token ids), streaming the output", run: runGenerate})
	register(&command{name: "run", summary: "generate from a text prompt (the demo model when no --model)", run: runRun})
}

// genFlags are the sampling and length flags shared by generate, run and chat.
type genFlags struct {
	model       *string
	quantize    *string
	kvCache     *string
	maxTokens   *int
	temperature *float64
	topP        *float64
	topK        *int
	minP        *float64
	repPenalty  *float64
	seed        *uint64
	ignoreEOS   *bool
	checkFinite *bool
}

func addGenFlags(fs interface {
	String(string, string, string) *string
	Int(string, int, string) *int
	Float64(string, float64, string) *float64
	Uint64(string, uint64, string) *uint64
	Bool(string, bool, string) *bool
}, defMax int, defTemp float64) genFlags {
	return genFlags{
		model:       fs.String("model", "", "checkpoint folder (default: the embedded demo model)"),
		quantize:    fs.String("quantize", "", `quantize linear weights at load: "int8"`),
		kvCache:     fs.String("kv-cache", "f32", kvCacheHelp),
		maxTokens:   fs.Int("max-tokens", defMax, "tokens to generate at most"),
		temperature: fs.Float64("temperature", defTemp, "sampling temperature; 0 is greedy"),
		topP:        fs.Float64("top-p", 1, "nucleus sampling: keep the smallest set of tokens with this much probability (1: off)"),
		topK:        fs.Int("top-k", 0, "keep only the K most likely tokens (0: off)"),
		minP:        fs.Float64("min-p", 0, "drop tokens less likely than this fraction of the most likely (0: off)"),
		repPenalty:  fs.Float64("repetition-penalty", 1, "penalise tokens already in the sequence (1: off)"),
		seed:        fs.Uint64("seed", 0, "random seed for sampling (same seed, same output)"),
		ignoreEOS:   fs.Bool("ignore-eos", false, "keep generating past end-of-sequence tokens"),
		checkFinite: fs.Bool("check-finite", false, "scan every weight for NaN and infinities at load (non-finite logits are an error either way)"),
	}
}

// options are the model load options of the flags.
func (g genFlags) options() model.Options {
	return model.Options{Quantize: *g.quantize, KVCache: *g.kvCache, CheckFinite: *g.checkFinite}
}

func (g genFlags) params() sample.Params {
	return sample.Params{
		Temperature: float32(*g.temperature), TopP: float32(*g.topP), TopK: *g.topK,
		MinP: float32(*g.minP), RepetitionPenalty: float32(*g.repPenalty), Seed: *g.seed,
	}
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate", "--model DIR (--prompt TEXT | --ids 1,2,3) --max-tokens N [flags]", `
Continues a prompt with the hybrid cache and streams the new text to stdout as
it is produced. --prompt is encoded with the model's tokenizer.json (with its
special tokens, e.g. BOS); --ids gives the token ids directly. With
--print-ids the last line of stdout is the generated ids, comma-separated.`, stderr)
	g := addGenFlags(fs, 64, 0)
	prompt := fs.String("prompt", "", "prompt text")
	idsFlag := fs.String("ids", "", "prompt token ids, comma-separated")
	printIDs := fs.Bool("print-ids", false, "print the generated ids as the last line of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*prompt == "") == (*idsFlag == "") {
		return fmt.Errorf("%w: give exactly one of --prompt and --ids", errUsage)
	}
	return generate(g, *prompt, *idsFlag, *printIDs, false, stdout, stderr)
}

func runRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[--model DIR] [flags] [PROMPT]", `
Generates a continuation of PROMPT and streams it to the terminal. Without
--model it uses the small demo model built into the binary (trained on Go
source code). Without PROMPT it reads the prompt from stdin.

The prompt's last token is healed: a prompt that ends inside a word or with a
space ends with a token that rarely stands alone in training text (a lone
space token, say), so it is dropped and the first generated token must begin
with its text. The output then continues the prompt as written.`, stderr)
	g := addGenFlags(fs, 128, 0.7)
	noHeal := fs.Bool("no-heal", false, "do not heal the prompt's last token (see above)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	prompt := joinArgs(fs.Args())
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
	return generate(g, prompt, "", false, !*noHeal, stdout, stderr)
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

func generate(g genFlags, prompt, idsFlag string, printIDs, heal bool, stdout, stderr io.Writer) error {
	p := g.params()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *g.maxTokens <= 0 {
		return fmt.Errorf("%w: --max-tokens must be positive", errUsage)
	}
	m, err := loadModel(*g.model, g.options(), stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	tok, tokErr := loadTokenizer(*g.model)
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
	var smp model.Sampler = sample.New(p, m.Config.VocabSize)
	healText := ""
	if heal && tok != nil {
		var allowed []bool
		if ids, allowed, healText = healPrompt(tok, ids, m.Config.VocabSize); allowed != nil {
			smp = &healSampler{inner: smp, allowed: allowed}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var dec interface {
		Add(int) string
		Flush() string
	}
	if tok != nil {
		sd := tok.NewStreamDecoder(false)
		sd.Prime(ids)
		dec = sd
	}
	start := time.Now()
	var first time.Duration
	gen, reason, err := m.Generate(ctx, ids, model.GenerateOptions{MaxTokens: *g.maxTokens, Sampler: smp, IgnoreEOS: *g.ignoreEOS}, func(id int) error {
		if first == 0 {
			first = time.Since(start)
		}
		if dec != nil {
			delta := dec.Add(id)
			// The healed token's own text is already in the prompt.
			switch {
			case healText == "":
			case strings.HasPrefix(delta, healText):
				delta, healText = delta[len(healText):], ""
			case strings.HasPrefix(healText, delta):
				delta, healText = "", healText[len(delta):]
			default:
				healText = ""
			}
			out.WriteString(delta)
		} else {
			fmt.Fprintf(out, "%d ", id)
		}
		return out.Flush()
	})
	if dec != nil {
		out.WriteString(dec.Flush())
	}
	fmt.Fprintln(out)
	if printIDs {
		fmt.Fprintln(out, joinIDs(gen))
	}
	if err != nil {
		return err
	}
	out.Flush() // the text, then the statistics on stderr
	el := time.Since(start)
	if len(gen) > 1 {
		fmt.Fprintf(stderr, "[%d prompt tokens, %d generated (%s); prompt %.0f ms, %.1f tokens/s]\n",
			len(ids), len(gen), reason, first.Seconds()*1000, float64(len(gen)-1)/(el-first).Seconds())
	}
	return nil
}

// healPrompt drops the last token of ids when other tokens extend its text,
// returning the shorter prompt, which tokens the first sampled one may be
// (those whose piece starts with the dropped piece), and the dropped
// token's text as decoded in context. allowed is nil when nothing is healed.
func healPrompt(tok *tokenizer.Tokenizer, ids []int, vocab int) ([]int, []bool, string) {
	if len(ids) < 2 {
		return ids, nil, ""
	}
	last := ids[len(ids)-1]
	piece, ok := tok.IDToToken(last)
	if !ok || tok.IsSpecial(last) || strings.HasPrefix(piece, "<0x") {
		return ids, nil, ""
	}
	full, head := tok.Decode(ids, false), tok.Decode(ids[:len(ids)-1], false)
	if !strings.HasPrefix(full, head) {
		return ids, nil, ""
	}
	allowed := make([]bool, vocab)
	n := 0
	for id := range allowed {
		if p, ok := tok.IDToToken(id); ok && !tok.IsSpecial(id) && strings.HasPrefix(p, piece) {
			allowed[id] = true
			n++
		}
	}
	if n < 2 {
		return ids, nil, ""
	}
	return ids[:len(ids)-1], allowed, full[len(head):]
}

// healSampler restricts the first sampled token to the allowed ones.
type healSampler struct {
	inner   model.Sampler
	allowed []bool
	done    bool
	buf     []float32
}

func (h *healSampler) Sample(logits []float32) int {
	if h.done {
		return h.inner.Sample(logits)
	}
	h.done = true
	h.buf = append(h.buf[:0], logits...)
	for i, ok := range h.allowed {
		if !ok {
			h.buf[i] = float32(math.Inf(-1))
		}
	}
	return h.inner.Sample(h.buf)
}

func (h *healSampler) Accept(id int)          { h.inner.Accept(id) }
func (h *healSampler) AcceptPrompt(ids []int) { h.inner.AcceptPrompt(ids) }
