package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/study"
	"github.com/jamba-go/jamba/study/tasks"
	"github.com/jamba-go/jamba/train"
)

func init() {
	register(&command{name: "study", summary: "look inside a model (attention, state) or train and compare hybrid layouts (ablate)", run: runStudy})
}

// studyCommands are the subcommands of jamba study.
var studyCommands = []struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}{
	{"attention", "attention maps of every attention layer and head, with induction and previous-token scores", runStudyAttention},
	{"state", "how far back each Mamba layer remembers (dt, decay, state norm, memory length) and which layers matter", runStudyState},
	{"tasks", "score a model on the synthetic in-context tasks (MQAR, induction, selective copy, few-shot format)", runStudyTasks},
	{"ablate", "train small models of several attention:Mamba layouts on the same data and compare them", runStudyAblate},
}

func runStudy(args []string, stdout, stderr io.Writer) error {
	help := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: jamba study <command> [flags]\n\nTools that look inside Jamba models and compare hybrid layouts.\n(Expert routing: 'jamba routing'.)\n\nCommands:\n")
		for _, c := range studyCommands {
			fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(w, "\nRun 'jamba study <command> --help' for its flags.\n")
	}
	if len(args) == 0 {
		help(stderr)
		return fmt.Errorf("%w: give a study command", errUsage)
	}
	switch args[0] {
	case "-h", "--help", "help":
		help(stdout)
		return nil
	}
	for _, c := range studyCommands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	help(stderr)
	return fmt.Errorf("%w: unknown study command %q", errUsage, args[0])
}

// ablateDefaults are jamba study ablate's training settings: sized so that
// the default set (11 variants, 3 seeds of mamba, 1:3 and 1:7: 17 runs)
// finishes within an hour on two cores with --workers 2, also when they
// are shared.
func ablateDefaults() train.Options {
	o := train.DefaultOptions()
	o.Seq, o.Batch, o.Steps = 64, 8, 1500
	o.LR, o.MinLR, o.Warmup = 3e-3, 3e-4, 100
	o.WeightDecay = 0.1
	o.EvalEvery, o.EvalTokens = 100, 4096
	return o
}

func runStudyAblate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("study ablate", "--output DIR [flags]", `
Trains a set of small Jamba models that differ only in layout, each from
its own random initialisation, on the same data and for the same number
of tokens, then evaluates each on held-out loss and on every synthetic
task at every size of its sweep (see 'jamba study tasks'). The variants
(--variants, default all):

  attention      every layer attention
  mamba          every layer Mamba
  1:1, 1:3, 1:7  one attention layer per 2, 4, 8 layers (Jamba: 1:7)
  <any>+moe      the same with 4 experts, top-2, on every other layer
  1:7-nonorm     1:7 without the dt/B/C RMSNorms inside the Mamba layers

All have the same width and depth; each variant's MLP width is chosen so
that its active parameters per token match the dense 1:7 model's (the MoE
variants hold more parameters in total, as Jamba does). The data is a mix
of the synthetic tasks (--tasks; by default the two recall tasks,
induction copy and MQAR) drawn from the seed (the same rows for every
variant of a seed), or with --data a text corpus tokenized with the demo
tokenizer (--tokenizer to change it), held out: --val, or its last 5%.
On the task mix the loss, in training and held out, is the cross-entropy
of the graded answers only (--all-tokens: of every token): the keys and
sequences around them are random, and their loss would drown the answers'.
The embedding table doubles as the LM head (--tie-embeddings=false to
untie): at this scale it lets a model copy a token from its context far
sooner.

Each run also gets the best induction score of its attention heads on
induction-task examples of 24 ids (see 'jamba study attention').

Writes to --output: results.csv (one line per run, task and size),
loss.png (held-out loss against tokens, mean over seeds), tasks.png
(accuracy against size per task, mean and range over seeds) and
runs/<variant>-s<seed>/ (each model as a checkpoint, with its metrics.csv
and loss.png, for 'jamba study attention --model').

--workers runs that many trainings at once, each on one thread (for
models this small that beats splitting a batch). --time-limit bounds the
whole ablation: each run gets an equal share of the time left and stops
early if it runs out (results.csv then shows fewer steps than planned).
The defaults (17 runs of 1500 steps of 512 tokens, models of about 152K
parameters) are sized for under an hour on two cores shared with other
work.`, stderr)
	out := fs.String("output", "", "folder for results.csv, the plots and the runs' checkpoints (required)")
	variants := fs.String("variants", "all", "comma-separated variants to train (see above)")
	seeds := fs.Int("seeds", 3, "seeds 1..N for the variants of --seed-variants; the others run seed 1")
	seedVariants := fs.String("seed-variants", "mamba,1:3,1:7", "variants that run every seed ('all': every variant)")
	taskList := fs.String("tasks", "induction,mqar", "tasks of the training mix and the evaluation: mqar, induction, selective, fewshot (all: every one)")
	workers := fs.Int("workers", 0, "runs trained at once, one thread each (0: one per core)")
	timeLimit := fs.Duration("time-limit", 0, "bound on the whole ablation, e.g. 55m (0: none)")
	examples := fs.Int("eval-examples", 32, "examples per task and size in the evaluation")
	hidden := fs.Int("hidden", 32, "hidden size of every model")
	layers := fs.Int("layers", 8, "layers of every model (at least 8 for 1:7)")
	heads := fs.Int("heads", 2, "attention heads")
	inter := fs.Int("intermediate", 96, "MLP width of the dense 1:7 model (the others are matched to its active parameters)")
	var data pathList
	fs.Var(&data, "data", "train on this text instead of the task mix (files or folders; repeatable)")
	val := fs.String("val", "", "held-out text for --data (default: the last 5% of the data)")
	tokPath := fs.String("tokenizer", "", "tokenizer.json for --data (default: the demo model's)")
	tie := fs.Bool("tie-embeddings", true, "share the embedding table with the LM head (false: a separate head, as Jamba has)")
	initRange := fs.Float64("init-range", 0, "standard deviation of the initial weights (0: 0.02, Hugging Face's)")
	allTokens := fs.Bool("all-tokens", false, "train the task mix on every token's loss, not only the answers'")
	d := ablateDefaults()
	o := d
	fs.IntVar(&o.Seq, "seq", d.Seq, "tokens per training row")
	fs.IntVar(&o.Batch, "batch", d.Batch, "rows per step")
	fs.IntVar(&o.Steps, "steps", d.Steps, "optimizer steps of every run (equal tokens: steps·batch·seq)")
	fs.Float64Var(&o.LR, "lr", d.LR, "peak learning rate (cosine to --min-lr)")
	fs.Float64Var(&o.MinLR, "min-lr", d.MinLR, "final learning rate")
	fs.IntVar(&o.Warmup, "warmup", d.Warmup, "warmup steps")
	fs.IntVar(&o.EvalEvery, "eval-every", d.EvalEvery, "held-out loss every this many steps")
	fs.IntVar(&o.EvalTokens, "eval-tokens", d.EvalTokens, "held-out tokens")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --output is required", errUsage)
	}
	if *layers < 8 {
		return fmt.Errorf("%w: --layers %d: need at least 8 for the 1:7 layout", errUsage, *layers)
	}
	if !(*initRange >= 0) {
		return fmt.Errorf("%w: --init-range %g must not be negative", errUsage, *initRange)
	}
	if *hidden < 1 || *heads < 1 || *hidden%*heads != 0 {
		return fmt.Errorf("%w: --hidden %d must be a positive multiple of --heads %d", errUsage, *hidden, *heads)
	}
	ts, err := tasks.ByName(*taskList)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	vs, err := study.SelectVariants(study.Variants(*layers), *variants)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var sv []string
	if *seedVariants != "all" {
		for _, s := range strings.Split(*seedVariants, ",") {
			if s = strings.TrimSpace(s); s != "" {
				sv = append(sv, s)
			}
		}
		if _, err := study.SelectVariants(study.Variants(*layers), *seedVariants); err != nil {
			return fmt.Errorf("%w: --seed-variants: %v", errUsage, err)
		}
	}
	if *workers <= 0 {
		*workers = runtime.NumCPU()
	}
	// Each run is single-threaded; keep the kernels' pool from spreading
	// evaluation passes over more threads than the runs leave free.
	defer kernels.SetThreads(kernels.Threads())
	kernels.SetThreads(1)
	shape := study.Shape{Vocab: tasks.Vocab, Hidden: *hidden, Layers: *layers, Heads: *heads, Intermediate: *inter, DState: 16, Experts: 4, TieEmbeddings: *tie, InitRange: *initRange}
	opts := study.AblateOptions{Shape: shape, Variants: vs, Seeds: *seeds, SeedVariants: sv, Train: o, Tasks: ts,
		EvalExamples: *examples, Workers: *workers, TimeLimit: *timeLimit, Out: *out, Log: stderr, AllTokens: *allTokens}
	if len(data) > 0 {
		if err := ablateText(&opts, data, *val, *tokPath, stderr); err != nil {
			return err
		}
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	runs := 0
	for s := 1; s <= max(*seeds, 1); s++ {
		for _, v := range vs {
			if s == 1 || len(sv) == 0 || contains(sv, v.Name) {
				runs++
			}
		}
	}
	fmt.Fprintf(stderr, "ablation: %d runs (%d variants, seeds 1..%d) of %d steps x %d tokens, %d at once\n",
		runs, len(vs), *seeds, o.Steps, o.Batch*o.Seq, *workers)
	for _, v := range vs {
		c := shape.Config(v)
		if opts.Data != nil {
			c.VocabSize = shape.Vocab
		}
		total, active := c.ParamCount()
		fmt.Fprintf(stderr, "  %-12s MLP width %d: %s parameters, %s active\n", v.Name, c.IntermediateSize, humanCount(total), humanCount(active))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	rs, err := study.Ablate(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d runs in %s; results.csv, loss.png, tasks.png in %s\n", len(rs), time.Since(start).Round(time.Second), *out)
	return study.WriteSummary(stdout, rs)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ablateText switches an ablation to a text corpus.
func ablateText(o *study.AblateOptions, data pathList, val, tokPath string, stderr io.Writer) error {
	tok, err := openTokenizer(tokPath)
	if err != nil {
		return err
	}
	files, err := train.ListFiles(data)
	if err != nil {
		return err
	}
	sep := -1
	if id, ok := tok.EOS(); ok {
		sep = id
	}
	texts, err := train.ReadTexts(files)
	if err != nil {
		return err
	}
	ids := train.TokenizeTexts(texts, tok, sep)
	var vids []int32
	if val != "" {
		if vids, err = train.Tokenize([]string{val}, tok, -1); err != nil {
			return err
		}
	} else {
		cut := len(ids) * 95 / 100
		ids, vids = ids[:cut], ids[cut:]
	}
	o.Data, o.Val = ids, vids
	o.Shape.Vocab = max(tok.VocabSize(), tasks.Vocab)
	fmt.Fprintf(stderr, "text: %d training and %d held-out tokens, vocabulary %d\n", len(ids), len(vids), o.Shape.Vocab)
	return nil
}
