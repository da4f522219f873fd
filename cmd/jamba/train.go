package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
	"github.com/jamba-go/jamba/train"
)

func init() {
	register(&command{name: "train", summary: "train or fine-tune a model on text files (AdamW, resumable checkpoints)", run: runTrain})
}

// pathList is a repeatable flag of paths, also comma-separated.
type pathList []string

func (l *pathList) String() string { return strings.Join(*l, ",") }

func (l *pathList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

// tokenizerFiles are copied from the model (or tokenizer) folder into every checkpoint.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "generation_config.json"}

func runTrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", "[--model DIR | --resume DIR] --data PATH [--data PATH ...] --output DIR [flags]", `
Trains a model with AdamW on text: from a 'jamba init' checkpoint to train
from scratch, or from any checkpoint to fine-tune. The data (--data, any
number of text files, .gz files or folders of them) is tokenized with the
model's tokenizer, each file whole and followed by the end-of-text token,
and packed into rows of --seq tokens; rows are served in a seeded random
order that changes every epoch. Each optimizer step runs --accum
micro-batches of --batch rows (gradient accumulation), clips the global
gradient norm to --clip, and updates with AdamW (decoupled weight decay on
the weight matrices only) at a learning rate that warms up linearly over
--warmup steps and then follows a cosine down to --min-lr at --steps.

With --rows lines, each row instead starts at the beginning of a line of
the data and is encoded the way a prompt is (BOS, then the text from that
line on, its indentation dropped), so that the model learns to continue
text that starts where prompts start; an epoch holds about as many tokens.

The loss is the mean next-token cross-entropy plus router_aux_loss_coef
times the MoE load-balancing loss. Every --eval-every steps, and at the last
step, the mean cross-entropy over the first --eval-tokens tokens of --val
is computed in non-overlapping windows of --seq tokens (the same windows as
'jamba perplexity --context SEQ --max-tokens N').

Every --save-every steps and when it stops, the run writes to --output a
Hugging Face checkpoint (model.safetensors in float32, config.json, the
tokenizer files) that transformers loads, plus optimizer.safetensors (AdamW
moments, step, data position and these options), metrics.csv (one line per
step) and loss.png (the loss curve). --resume DIR continues such a run
exactly as if it had not stopped: the options are those saved, except the
flags given again on the command line. --time-limit ends a leg cleanly (it
saves), for runs split into legs; Ctrl-C and SIGTERM save too (a second
one quits at once).

Each save is written whole into DIR/checkpoints/step-N/ with a manifest
(the step and each file's SHA-256), then linked to the top of DIR, whose
manifest.json is replaced last; the last two saves are kept. A resume
verifies the files against the manifest: a save cut short (kill -9, a full
disk) is resumed from the newest complete save, with a warning naming the
step of each file, never from a mix of two saves.

--workers runs data-parallel: each worker is a single-threaded engine
over the shared weights that takes its share of a micro-batch's rows, and
the gradients are summed. It scales to one worker per core (the default),
where one engine spreading each operation over the threads stops gaining
beyond 2 or 3. The result is deterministic for a given worker count, which
the checkpoint records (a resume keeps it unless --workers is given).

--lora-rank R trains a LoRA adapter instead of the model: every layer named
by --lora-targets gets W + (alpha/R)·B·A with A [R, in] (PEFT's
initialisation: uniform in ±1/√in) and B [out, R] (zeros), the model stays
frozen (it may be a .gguf file, or quantized with --quantize int8|q4), and
only A and B are trained, with exact gradients and dropout --lora-dropout on
the adapters' input. The saves are PEFT adapter folders
(adapter_config.json, adapter_model.safetensors) that 'jamba run --lora DIR'
and the other commands, 'jamba merge' and peft.PeftModel.from_pretrained
load; --resume loads the base model again from the path the run recorded.`, stderr)
	mf := addModelFlags(fs, weightsOnly)
	fs.Lookup("model").Usage = "checkpoint to start from ('jamba init' output, any Hugging Face Jamba checkpoint, or a .gguf file; default: the embedded demo model)"
	modelDir := mf.model
	resume := fs.String("resume", "", "checkpoint folder of an earlier 'jamba train' run to continue")
	var data pathList
	fs.Var(&data, "data", "training text: files, .gz files or folders (repeat or separate with commas; required)")
	val := fs.String("val", "", "held-out text file for the validation loss (none: no validation)")
	output := fs.String("output", "", "folder for checkpoints, metrics.csv and loss.png (required; default with --resume: the resumed run's folder)")
	tokPath := fs.String("tokenizer", "", "tokenizer.json to use (default: the one in the model folder)")
	o := &train.Options{}
	d := train.DefaultOptions()
	d.Rows = train.RowsStream
	bindTrainOptions(fs, o, d)
	loraRank := fs.Int("lora-rank", 0, "train a LoRA adapter of this rank over the frozen model instead of the model (0: train the model itself)")
	loraAlpha := fs.Float64("lora-alpha", 0, "LoRA alpha: the adapter's update is scaled by alpha/rank (default: the rank, a scale of 1)")
	loraDropout := fs.Float64("lora-dropout", 0, "dropout probability on the adapters' input during training (0 when experts are targeted: PEFT refuses dropout there)")
	loraTargets := fs.String("lora-targets", strings.Join(defaultLoRATargets, ","), "layers to adapt, comma-separated, or all: "+strings.Join(lora.Targets, ",")+
		" (experts: every expert's gate_proj, up_proj and down_proj, in PEFT's packed form for transformers 5's experts)")
	quantize := fs.String("quantize", "", `with --lora-rank: "int8" or "q4" quantizes the frozen base at load (QLoRA-style: the adapter trains over the quantized weights' values)`)
	stopStep := fs.Int("stop-step", 0, "end this leg after this step (saving), without changing the schedule (0: run to --steps)")
	timeLimit := fs.Duration("time-limit", 0, "end this leg, saving, after the first step that ends past this duration (e.g. 9m; 0: none)")
	quiet := fs.Bool("quiet", false, "no progress bar; print one line per validation instead")
	logEvery := fs.Int("log-every", 0, "also print a line every this many steps (0: only at validations)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the training steps to this file (for go tool pprof)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if len(data) == 0 {
		return fmt.Errorf("%w: --data is required", errUsage)
	}
	if *resume != "" && *modelDir != "" {
		return fmt.Errorf("%w: give --model or --resume, not both", errUsage)
	}
	if *resume != "" {
		for _, f := range []string{"lora-rank", "lora-alpha", "lora-dropout", "lora-targets", "quantize"} {
			if set[f] {
				return fmt.Errorf("%w: --%s comes from the checkpoint on --resume", errUsage, f)
			}
		}
	}
	if *loraRank < 0 {
		return fmt.Errorf("%w: --lora-rank must not be negative", errUsage)
	}
	if *loraRank == 0 {
		for _, f := range []string{"lora-alpha", "lora-dropout", "lora-targets", "quantize"} {
			if set[f] {
				return fmt.Errorf("%w: --%s needs --lora-rank", errUsage, f)
			}
		}
	} else {
		targets, err := lora.ParseTargets(*loraTargets)
		if err != nil {
			return fmt.Errorf("%w: --lora-targets: %v", errUsage, err)
		}
		alpha := *loraAlpha
		if !set["lora-alpha"] {
			alpha = float64(*loraRank)
		}
		base := *modelDir
		if base != "" {
			if base, err = filepath.Abs(base); err != nil {
				return err
			}
		}
		o.LoRA = &train.LoRAOptions{Rank: *loraRank, Alpha: alpha, Dropout: *loraDropout, Targets: targets,
			Base: base, BaseQuantize: *quantize, BaseName: base}
		if base == "" {
			o.LoRA.BaseName = modelName("")
		}
		c := o.LoRA.Config()
		if err := c.Validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	var err error
	if *output == "" {
		if *resume == "" {
			return fmt.Errorf("%w: --output is required", errUsage)
		}
		*output = train.RunFolder(*resume)
	}
	if err := mf.applyThreads(); err != nil {
		return err
	}

	// The tokenizer, and where its files come from.
	src := *modelDir
	if *resume != "" {
		// The newest complete save: the top of the folder, or one of its
		// checkpoints/ when a save was cut short.
		var notes []string
		if src, notes, err = train.FindCheckpoint(*resume); err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintf(stderr, "warning: %s\n", n)
		}
	}
	var tok *tokenizer.Tokenizer
	tokSrc := filepath.Join(src, "tokenizer.json")
	ggufTok := ggufTokenizerSource(src, *tokPath) // a GGUF file's tokenizer, kept in tokenizer.gguf
	switch {
	case ggufTok != "":
		tok, err = ggufTokenizer(ggufTok)
	case *tokPath != "":
		tokSrc = *tokPath
		tok, err = tokenizer.Load(*tokPath)
	case src == "":
		tokSrc = ""
		tok, err = loadTokenizer("")
	default:
		if _, serr := os.Stat(tokSrc); serr != nil {
			return fmt.Errorf("%s has no tokenizer.json: give --tokenizer FILE", src)
		}
		tok, err = tokenizer.Load(tokSrc)
	}
	if err != nil {
		return err
	}

	// The data.
	files, err := train.ListFiles(data)
	if err != nil {
		return err
	}
	sep := -1
	if id, ok := tok.EOS(); ok {
		sep = id
	}
	start := time.Now()
	texts, err := train.ReadTexts(files)
	if err != nil {
		return err
	}
	trainTokens := train.TokenizeTexts(texts, tok, sep)
	var valTokens []int32
	if *val != "" {
		if valTokens, err = train.Tokenize([]string{*val}, tok, -1); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "tokenized %d file(s): %d training tokens, %d validation tokens (%.1fs)\n",
		len(files), len(trainTokens), len(valTokens), time.Since(start).Seconds())

	// The trainer: resumed, or new from a checkpoint.
	var tr *train.Trainer
	if *resume != "" {
		tr, err = train.ResumeWith(*resume, trainTokens, valTokens, func(saved *train.Options) {
			overrideOptions(saved, fs)
			if set["workers"] && saved.Workers == 0 {
				saved.Workers = autoWorkers(saved.Batch)
			}
		}, loadLoRABase)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "resuming %s at step %d of %d\n", tr.Checkpoint, tr.StepsDone(), tr.Opts.Steps)
	} else {
		var p *train.Params
		if o.LoRA != nil {
			p, err = loadLoRABase(o.LoRA) // --threads is applied above
		} else {
			var m *loadedModel
			if m, err = mf.open(); err != nil {
				return err
			}
			p, err = train.ParamsFromModel(m.Model)
			m.Close()
		}
		if err != nil {
			return err
		}
		if o.Workers == 0 {
			o.Workers = autoWorkers(o.Batch)
		}
		if tr, err = train.NewTrainer(p, trainTokens, valTokens, *o); err != nil {
			return err
		}
	}
	if err := tr.SetText(texts, tok, sep); err != nil {
		return err
	}
	texts = nil
	cfg := tr.Params.Config
	total, active := cfg.ParamCount()
	workers := "one engine on all threads"
	if tr.Workers != nil {
		workers = fmt.Sprintf("%d data-parallel workers", len(tr.Workers.Backprops))
	}
	fmt.Fprintf(stderr, "model: %s parameters (%s active per token); %d rows of %d tokens per epoch; %d tokens per step; %s\n",
		humanCount(total), humanCount(active), tr.Data.RowsPerEpoch(), tr.Opts.Seq, tr.Opts.Seq*tr.Opts.Batch*tr.Opts.Accum, workers)
	if tr.LoRA != nil {
		ad := tr.LoRA.Adapter
		fmt.Fprintf(stderr, "LoRA: %s trained parameters (%.2f%% of the model) in %d layers (%s); rank %d, alpha %g, dropout %g; the model is frozen\n",
			humanCount(int64(ad.Size())), 100*float64(ad.Size())/float64(total), len(ad.Modules), strings.Join(tr.Opts.LoRA.Targets, ","),
			ad.Config.Rank, ad.Config.Alpha, ad.Config.Dropout)
	}

	ctx, stop := stopContext(stderr, "finishing the step and saving")
	defer stop()
	first := tr.StepsDone()
	last := tr.Opts.Steps
	if *stopStep > 0 {
		last = min(last, *stopStep)
	}
	var bar *progressbar.ProgressBar
	if !*quiet {
		bar = progressbar.NewOptions(max(last-first, 0),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetWidth(25),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetDescription("training"),
		)
	}
	var ema float64
	logLine := func(m train.Metric) {
		v := ""
		if !math.IsNaN(m.ValLoss) {
			v = fmt.Sprintf(" val %.4f", m.ValLoss)
		}
		line := fmt.Sprintf("step %d/%d  loss %.4f%s  aux %.4f  lr %.3g  grad-norm %.3f  %.0f tok/s  %s",
			m.Step, tr.Opts.Steps, m.Loss, v, m.Aux, m.LR, m.GradNorm, m.TokensPerSec, time.Duration(m.Elapsed*float64(time.Second)).Round(time.Second))
		if bar != nil {
			bar.Clear()
		}
		fmt.Fprintln(stderr, line)
	}
	// The tokenizer files are read now: the folder they come from may be
	// a save that later saves replace.
	var dirs []string
	if tokSrc != "" {
		dirs = append(dirs, filepath.Dir(tokSrc))
	}
	if src != "" {
		dirs = append(dirs, src)
	}
	var tokFiles map[string][]byte
	if ggufTok != "" {
		tokFiles, err = ggufTokenizerFiles(ggufTok) // a GGUF file's tokenizer: tokenizer.gguf
	} else {
		tokFiles, err = readTokenizerFiles(dirs, tokSrc)
	}
	if err != nil {
		return err
	}
	ro := train.RunOptions{
		Dir:       *output,
		StopStep:  *stopStep,
		TimeLimit: *timeLimit,
		BeforeSave: func(dir string) error {
			return writeTokenizerFiles(tokFiles, dir, cfg)
		},
		OnStep: func(m train.Metric) {
			if ema == 0 {
				ema = m.Loss
			}
			ema = 0.9*ema + 0.1*m.Loss
			if !math.IsNaN(m.ValLoss) || (*logEvery > 0 && m.Step%*logEvery == 0) {
				logLine(m)
			}
			if bar != nil {
				bar.Describe(fmt.Sprintf("step %d  loss %.3f  %.0f tok/s", m.Step, ema, m.TokensPerSec))
				bar.Add(1)
			}
		},
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	err = tr.Run(ctx, ro)
	if bar != nil {
		bar.Exit()
		fmt.Fprintln(stderr)
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "interrupted at step %d; saved to %s (continue with --resume %s)\n", tr.StepsDone(), *output, *output)
		return nil
	}
	if err != nil {
		return err
	}
	if n := len(tr.Metrics); n > 0 {
		m := tr.Metrics[n-1]
		val := "" // no validation ran at the last step (a leg that stopped early)
		if !math.IsNaN(m.ValLoss) {
			val = fmt.Sprintf(" val_loss %.6f", m.ValLoss)
		}
		fmt.Fprintf(stdout, "step %d loss %.6f%s tokens %d elapsed_s %.1f\n", m.Step, m.Loss, val, m.Tokens, m.Elapsed)
	}
	if tr.StepsDone() < tr.Opts.Steps {
		fmt.Fprintf(stderr, "stopped at step %d of %d; continue with: jamba train --resume %s --data ...\n", tr.StepsDone(), tr.Opts.Steps, *output)
	}
	if tr.LoRA != nil {
		fmt.Fprintf(stderr, "adapter (adapter_config.json, adapter_model.safetensors), metrics.csv and loss.png in %s; use it with --lora %s\n", *output, *output)
		return nil
	}
	fmt.Fprintf(stderr, "checkpoint, metrics.csv and loss.png in %s\n", *output)
	return nil
}

// defaultLoRATargets are the layers --lora-targets adapts by default: the
// projections of the Mamba, attention and dense MLP layers but dt_proj (as
// AI21's own LoRA examples; PEFT's forward on transformers 5's CPU Mamba
// path does not apply a dt_proj adapter), not the routers or the experts.
var defaultLoRATargets = []string{"in_proj", "x_proj", "out_proj", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// loadLoRABase loads the frozen base of a LoRA run as float32 parameters:
// its --model (a folder, a .gguf file or the demo model) loaded as the run
// was started, quantized when it was.
func loadLoRABase(o *train.LoRAOptions) (*train.Params, error) {
	m, err := openModel(o.Base, model.Options{Quantize: o.BaseQuantize})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return train.FrozenParamsFromModel(m.Model)
}

// bindTrainOptions defines the flags of the training options on fs,
// writing into o, with the defaults d. A resumed run binds the saved
// options the same way and sets the flags given again.
func bindTrainOptions(fs *flag.FlagSet, o *train.Options, d train.Options) {
	fs.IntVar(&o.Seq, "seq", d.Seq, "tokens per training row (context length)")
	fs.IntVar(&o.Batch, "batch", d.Batch, "rows per micro-batch")
	fs.IntVar(&o.Accum, "accum", d.Accum, "micro-batches per optimizer step (gradient accumulation)")
	fs.IntVar(&o.Steps, "steps", d.Steps, "optimizer steps of the whole run (the cosine ends here)")
	fs.Float64Var(&o.LR, "lr", d.LR, "peak learning rate")
	fs.Float64Var(&o.MinLR, "min-lr", d.MinLR, "final learning rate of the cosine schedule")
	fs.IntVar(&o.Warmup, "warmup", d.Warmup, "steps of linear learning-rate warmup")
	fs.Float64Var(&o.WeightDecay, "weight-decay", d.WeightDecay, "AdamW decoupled weight decay (weight matrices only, not norms, biases, A_log or D)")
	fs.Float64Var(&o.Beta1, "beta1", d.Beta1, "AdamW beta1 (first-moment decay)")
	fs.Float64Var(&o.Beta2, "beta2", d.Beta2, "AdamW beta2 (second-moment decay)")
	fs.Float64Var(&o.Eps, "eps", d.Eps, "AdamW epsilon")
	fs.Float64Var(&o.Clip, "clip", d.Clip, "clip the global gradient L2 norm to this (0: no clipping)")
	fs.Uint64Var(&o.Seed, "seed", d.Seed, "seed of the data order")
	fs.IntVar(&o.EvalEvery, "eval-every", d.EvalEvery, "validate every this many steps (0: only at the last step)")
	fs.IntVar(&o.EvalTokens, "eval-tokens", d.EvalTokens, "validation tokens from the start of --val (0: all)")
	fs.IntVar(&o.SaveEvery, "save-every", d.SaveEvery, "save a checkpoint every this many steps (0: only when stopping)")
	fs.BoolVar(&o.Recompute, "recompute", d.Recompute, "recompute activations in the backward pass: activation memory of one layer, about a third more time")
	fs.StringVar(&o.Rows, "rows", d.Rows, "how rows are cut: \"stream\" (windows of the packed token stream) or \"lines\" (each row starts at a line start, encoded as a prompt: BOS, then the line without its indentation)")
	fs.IntVar(&o.Workers, "workers", d.Workers, "data-parallel workers: single-threaded engines that each take a share of a batch's rows (0: one per thread, at most --batch; 1: one engine spreading each operation over the threads)")
}

// overrideOptions sets in saved the training options whose flags fs was
// given: a resumed run keeps its saved options except those.
// The values were parsed by flags of the same types, so setting them again
// cannot fail.
func overrideOptions(saved *train.Options, fs *flag.FlagSet) {
	again := flag.NewFlagSet("resume", flag.ContinueOnError)
	bindTrainOptions(again, saved, *saved)
	fs.Visit(func(f *flag.Flag) {
		if again.Lookup(f.Name) != nil {
			_ = again.Set(f.Name, f.Value.String())
		}
	})
}

// autoWorkers is the default worker count: one per thread, at most the
// rows of a batch.
func autoWorkers(batch int) int {
	return max(1, min(runtime.GOMAXPROCS(0), batch))
}

// writeGenerationConfig writes a generation_config.json with the config's
// special tokens, as transformers saves one beside a model.
func writeGenerationConfig(dir string, cfg *model.Config) error {
	g := map[string]any{}
	if cfg.BOSTokenID != nil {
		g["bos_token_id"] = *cfg.BOSTokenID
	}
	if cfg.PadTokenID != nil {
		g["pad_token_id"] = *cfg.PadTokenID
	}
	if len(cfg.EOSTokenIDs) == 1 {
		g["eos_token_id"] = cfg.EOSTokenIDs[0]
	} else if len(cfg.EOSTokenIDs) > 1 {
		g["eos_token_id"] = cfg.EOSTokenIDs
	}
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "generation_config.json"), append(data, '\n'))
}
