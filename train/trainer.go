package train

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// Options are the hyperparameters of a training run. They are saved with
// every checkpoint and restored on resume.
type Options struct {
	Seq         int     `json:"seq"`          // tokens per row
	Batch       int     `json:"batch"`        // rows per micro-batch
	Accum       int     `json:"accum"`        // micro-batches per optimizer step
	Steps       int     `json:"steps"`        // optimizer steps of the whole run
	LR          float64 `json:"lr"`           // peak learning rate
	MinLR       float64 `json:"min_lr"`       // learning rate at the end of the cosine
	Warmup      int     `json:"warmup"`       // linear warmup steps
	WeightDecay float64 `json:"weight_decay"` // AdamW decoupled weight decay (weight matrices only)
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	Clip        float64 `json:"clip"`        // global gradient-norm clip (0: none)
	Seed        uint64  `json:"seed"`        // data order
	EvalEvery   int     `json:"eval_every"`  // validation every this many steps (0: only at the end)
	EvalTokens  int     `json:"eval_tokens"` // validation tokens (0: the whole file)
	SaveEvery   int     `json:"save_every"`  // checkpoint every this many steps (0: only at the end)
	Recompute   bool    `json:"recompute"`   // recompute activations in the backward pass
	// Workers is the number of data-parallel workers (see Workers): each
	// micro-batch's rows are shared among that many single-threaded
	// Backprops. 0 or 1: one Backprop that spreads each operation over all
	// threads. The result of a run depends on it (the order of the
	// gradient's sums), so it is saved with the run.
	Workers int `json:"workers"`
	// Rows is how training rows are cut: RowsStream ("" in checkpoints
	// saved before this option) or RowsLines (see Loader.SetLines; the run
	// then needs its texts through SetText).
	Rows string `json:"rows,omitempty"`
	// LoRA, when set, trains a LoRA adapter over the frozen model
	// instead of the model itself.
	LoRA *LoRAOptions `json:"lora,omitempty"`
}

// LoRAOptions describe the adapter of a LoRA run and its base model.
type LoRAOptions struct {
	Rank    int      `json:"rank"`
	Alpha   float64  `json:"alpha"`
	Dropout float64  `json:"dropout"`
	Targets []string `json:"targets"`
	// Base is the base model's --model value ("" for the embedded demo
	// model) and BaseQuantize how it was loaded ("", "int8" or "q4"): a resume
	// loads it again the same way.
	Base         string `json:"base"`
	BaseQuantize string `json:"base_quantize,omitempty"`
	// BaseName is adapter_config.json's base_model_name_or_path (default:
	// Base).
	BaseName string `json:"base_name,omitempty"`
}

// Config is the adapter config of o.
func (o *LoRAOptions) Config() lora.Config {
	name := o.BaseName
	if name == "" {
		name = o.Base
	}
	return lora.Config{Rank: o.Rank, Alpha: o.Alpha, Dropout: o.Dropout, Targets: o.Targets, BaseModel: name}
}

// DefaultOptions returns the defaults of jamba train.
func DefaultOptions() Options {
	return Options{
		Seq: 256, Batch: 8, Accum: 1, Steps: 1000, LR: 1e-3, MinLR: 1e-4, Warmup: 100,
		WeightDecay: 0.1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Clip: 1,
		EvalEvery: 100, EvalTokens: 16384, SaveEvery: 500,
	}
}

// Validate checks the options.
func (o *Options) Validate() error {
	switch {
	case o.Seq < 2:
		return fmt.Errorf("train: seq %d: need at least 2 tokens per row", o.Seq)
	case o.Batch < 1 || o.Accum < 1:
		return fmt.Errorf("train: batch %d and accum %d must be positive", o.Batch, o.Accum)
	case o.Steps < 1:
		return fmt.Errorf("train: steps %d must be positive", o.Steps)
	case !(o.LR > 0) || o.MinLR < 0 || o.MinLR > o.LR:
		return fmt.Errorf("train: learning rates lr %g, min-lr %g: need 0 ≤ min-lr ≤ lr, lr > 0", o.LR, o.MinLR)
	case o.Warmup < 0:
		return fmt.Errorf("train: warmup %d must not be negative", o.Warmup)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return fmt.Errorf("train: betas %g, %g must be in [0, 1)", o.Beta1, o.Beta2)
	case !(o.Eps > 0):
		return fmt.Errorf("train: eps %g must be positive", o.Eps)
	case o.WeightDecay < 0 || o.Clip < 0 || o.EvalEvery < 0 || o.EvalTokens < 0 || o.SaveEvery < 0:
		return errors.New("train: weight decay, clip, eval and save intervals must not be negative")
	case o.Rows != "" && o.Rows != RowsStream && o.Rows != RowsLines:
		return fmt.Errorf("train: rows %q: want %q or %q", o.Rows, RowsStream, RowsLines)
	case o.Workers < 0 || o.Workers > o.Batch:
		return fmt.Errorf("train: %d workers for batches of %d rows: need 0 to %d", o.Workers, o.Batch, o.Batch)
	}
	if o.LoRA != nil {
		c := o.LoRA.Config()
		if err := c.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Metric is one optimizer step's line of the metrics log.
type Metric struct {
	Step         int     // steps done, from 1
	Tokens       int64   // training tokens seen so far
	LR           float64 // learning rate of this step
	Loss         float64 // mean cross-entropy of the step's micro-batches
	Aux          float64 // mean load-balancing loss
	GradNorm     float64 // before clipping
	ValLoss      float64 // validation cross-entropy, NaN when not evaluated at this step
	TokensPerSec float64
	Elapsed      float64 // seconds of training so far, over all legs
}

// Trainer holds the state of a training run.
type Trainer struct {
	Opts   Options
	Params *Params
	// Backprop runs the passes with Opts.Workers ≤ 1; with more, Workers
	// does, and Backprop is its first Backprop.
	Backprop *Backprop
	Workers  *Workers
	Opt      *AdamW
	// LoRA is the adapter a LoRA run trains (Opts.LoRA); Params are then
	// the frozen base.
	LoRA    *LoRA
	Data    *Loader
	Val     [][]int // validation windows; nil: no validation
	Metrics []Metric
	Tokens  int64
	Elapsed float64

	// Checkpoint is the folder a resumed run was loaded from, and Notes
	// say why it is not the one asked for (a save cut short), if so.
	Checkpoint string
	Notes      []string

	valCE   []float64 // per-window cross-entropy sums of an evaluation
	valMask [][]bool  // the validation windows' loss masks (nil: every token)
}

// SetLossMask restricts the loss, in training and in validation, to the
// tokens that data and val (one entry per token of the streams the trainer
// was made with; val may be nil without validation data) mark: every
// other token is context only (the answers of a synthetic task, say, among
// random keys no model can predict). The masks are not saved with a
// checkpoint; a resumed run sets them again.
func (t *Trainer) SetLossMask(data, val []bool) error {
	if t.Opts.Rows == RowsLines {
		return errors.New("train: a loss mask needs stream rows")
	}
	if len(data) != len(t.Data.Tokens) {
		return fmt.Errorf("train: a loss mask of %d entries for %d training tokens", len(data), len(t.Data.Tokens))
	}
	var vm [][]bool
	if t.Val != nil {
		vm = WindowMasks(val, t.Opts.Seq, t.Opts.EvalTokens)
		if len(vm) != len(t.Val) {
			return fmt.Errorf("train: a validation loss mask of %d entries does not match the validation tokens", len(val))
		}
	}
	t.Data.Mask, t.valMask = data, vm
	return nil
}

// NewTrainer starts a run at step 0 over p with training tokens data and
// validation tokens val (nil for none).
func NewTrainer(p *Params, data, val []int32, opts Options) (*Trainer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	for _, ids := range [][]int32{data, val} {
		for _, id := range ids {
			if id < 0 || int(id) >= p.Config.VocabSize {
				return nil, fmt.Errorf("train: token id %d outside the model's vocabulary of %d (wrong tokenizer?)", id, p.Config.VocabSize)
			}
		}
	}
	var e *Backprop
	var ws *Workers
	var err error
	if opts.Workers > 1 {
		if ws, err = NewWorkers(p, opts.Workers); err != nil {
			return nil, err
		}
		ws.SetRecompute(opts.Recompute)
		e = ws.Backprops[0]
	} else {
		if e, err = NewBackprop(p); err != nil {
			return nil, err
		}
		e.Recompute = opts.Recompute
	}
	ld, err := NewLoader(data, opts.Seq, opts.Batch, opts.Seed)
	if err != nil {
		return nil, err
	}
	t := &Trainer{Opts: opts, Params: p, Backprop: e, Workers: ws, Data: ld}
	if opts.LoRA != nil {
		ad, err := lora.New(p.Config, opts.LoRA.Config())
		if err != nil {
			return nil, err
		}
		ad.Init(opts.Seed)
		t.LoRA = NewLoRA(p.Config, ad)
		bps := []*Backprop{e}
		if ws != nil {
			bps = ws.Backprops
		}
		for _, b := range bps {
			if err := b.SetLoRA(t.LoRA); err != nil {
				return nil, err
			}
		}
	}
	t.Opt = NewAdamW(t.trained(), opts.Beta1, opts.Beta2, opts.Eps, opts.WeightDecay)
	if val != nil {
		t.Val = Windows(val, opts.Seq, opts.EvalTokens)
		if len(t.Val) == 0 {
			return nil, fmt.Errorf("train: the validation data has %d tokens, fewer than one window of %d", len(val), opts.Seq)
		}
	}
	return t, nil
}

// trained are the parameters the run trains: the adapter's in a LoRA run,
// else the model's.
func (t *Trainer) trained() *Params {
	if t.LoRA != nil {
		return t.LoRA.Params
	}
	return t.Params
}

// Schedule returns the run's learning-rate schedule.
func (t *Trainer) Schedule() Schedule {
	return Schedule{LR: t.Opts.LR, MinLR: t.Opts.MinLR, Warmup: t.Opts.Warmup, Steps: t.Opts.Steps}
}

// StepsDone is the number of optimizer steps taken.
func (t *Trainer) StepsDone() int { return t.Opt.Step }

// SetText gives a run with Opts.Rows = RowsLines the texts of its training
// files, in the order their tokens were packed into the token stream the
// trainer was made with, and the encoder that made it; sep (≥ 0) ends a row
// that reaches the end of its file. Runs over the stream ignore it.
func (t *Trainer) SetText(texts []string, enc Encoder, sep int) error {
	if t.Opts.Rows != RowsLines {
		return nil
	}
	return t.Data.SetLines(texts, enc, sep)
}

// Step runs one optimizer step: Accum micro-batches of forward and
// backward, gradient clipping, the AdamW update.
func (t *Trainer) Step() (Metric, error) {
	start := time.Now()
	e, ws := t.Backprop, t.Workers
	backward := e.Backward
	if ws != nil {
		ws.ZeroGrad()
		backward = ws.Backward
	} else {
		e.ZeroGrad()
	}
	var ce, aux float64
	var tokens int64
	if t.Opts.Rows == RowsLines && t.Data.lines == nil {
		return Metric{}, errors.New("train: line rows need the training texts (Trainer.SetText)")
	}
	scale := float32(1 / float64(t.Opts.Accum))
	defer t.setMask(nil)
	for k := range t.Opts.Accum {
		if t.LoRA != nil {
			// The dropout masks: a function of (seed, step, micro-batch).
			seed := mix64(t.Opts.Seed ^ mix64(uint64(t.Opt.Step)<<20+uint64(k)))
			if ws != nil {
				for i, b := range ws.Backprops {
					b.SetDropoutSeed(seed + uint64(i)<<48)
				}
			} else {
				e.SetDropoutSeed(seed)
			}
		}
		rows := t.Data.Next()
		t.setMask(t.Data.RowMask)
		loss, err := backward(rows, scale)
		if err != nil {
			return Metric{}, err
		}
		ce += loss.CE / float64(t.Opts.Accum)
		aux += loss.Aux / float64(t.Opts.Accum)
		for _, r := range rows {
			tokens += int64(len(r))
		}
	}
	if math.IsNaN(ce) || math.IsInf(ce, 0) {
		return Metric{}, fmt.Errorf("train: step %d: the loss is %v", t.Opt.Step+1, ce)
	}
	lr := t.Schedule().At(t.Opt.Step)
	grad := e.trainGrad()
	if ws != nil {
		grad = ws.Grad()
	}
	norm := ClipGradNorm(grad, t.Opts.Clip)
	t.Opt.Update(grad, lr)
	t.Tokens += tokens
	sec := time.Since(start).Seconds()
	t.Elapsed += sec
	return Metric{Step: t.Opt.Step, Tokens: t.Tokens, LR: lr, Loss: ce, Aux: aux, GradNorm: norm,
		ValLoss: math.NaN(), TokensPerSec: float64(tokens) / sec, Elapsed: t.Elapsed}, nil
}

// Evaluate returns the mean cross-entropy over the validation windows,
// computed in batches of Opts.Batch windows. Each window's terms are added
// in token order and the windows' sums in window order, so the result is
// the same for any number of workers.
func (t *Trainer) Evaluate() (float64, error) {
	if len(t.Val) == 0 {
		return math.NaN(), nil
	}
	sums := t.valCE[:0]
	var n int
	defer t.setMask(nil) // the masks serve this evaluation only, also on an error
	for i := 0; i < len(t.Val); i += t.Opts.Batch {
		rows := t.Val[i:min(i+t.Opts.Batch, len(t.Val))]
		var mask [][]bool
		if t.valMask != nil {
			mask = t.valMask[i : i+len(rows)]
		}
		t.setMask(mask)
		var err error
		if t.Workers != nil {
			sums, err = t.Workers.rowCE(sums, rows)
		} else if _, err = t.Backprop.Forward(rows); err == nil {
			sums = t.Backprop.appendRowCE(sums)
		}
		if err != nil {
			return 0, err
		}
		if mask != nil {
			n += maskCount(mask)
		} else {
			for _, r := range rows {
				n += len(r) - 1
			}
		}
	}
	t.valCE = sums
	var sum float64
	for _, v := range sums {
		sum += v
	}
	return sum / float64(max(n, 1)), nil
}

// setMask hands the loss mask of the next pass to whichever runs it.
func (t *Trainer) setMask(mask [][]bool) {
	if t.Workers != nil {
		t.Workers.LossMask = mask
	} else {
		t.Backprop.LossMask = mask
	}
}

// RunOptions control one leg of a run.
type RunOptions struct {
	Dir       string        // checkpoint folder (written at every save; see SaveCheckpoint)
	StopStep  int           // stop after this step (0: Opts.Steps)
	TimeLimit time.Duration // stop and save after the first step ending past it (0: none)
	// BeforeSave is called with the folder of each new save before its
	// manifest is written, to add files (the tokenizer's, say); may be nil.
	BeforeSave func(dir string) error
	OnStep     func(m Metric) // after each step (and its validation); may be nil
}

// Run trains until StopStep, the time limit or ctx's end, validating every
// EvalEvery steps and at the last step of the run, saving every SaveEvery
// steps and when it stops. It returns ctx's error if ctx ended the leg.
func (t *Trainer) Run(ctx context.Context, ro RunOptions) error {
	stop := t.Opts.Steps
	if ro.StopStep > 0 {
		stop = min(stop, ro.StopStep)
	}
	start := time.Now()
	for t.Opt.Step < stop {
		m, err := t.Step()
		if err != nil {
			return err
		}
		last := m.Step == t.Opts.Steps
		if (t.Opts.EvalEvery > 0 && m.Step%t.Opts.EvalEvery == 0) || last {
			if m.ValLoss, err = t.Evaluate(); err != nil {
				return err
			}
		}
		t.Metrics = append(t.Metrics, m)
		if ro.OnStep != nil {
			ro.OnStep(m)
		}
		timeUp := ro.TimeLimit > 0 && time.Since(start) >= ro.TimeLimit
		done := m.Step >= stop || timeUp || ctx.Err() != nil
		if done || (t.Opts.SaveEvery > 0 && m.Step%t.Opts.SaveEvery == 0) {
			if err := t.SaveCheckpoint(ro.Dir, ro.BeforeSave); err != nil {
				return err
			}
		}
		if done {
			break
		}
	}
	return ctx.Err()
}

// trainState is what optimizer.safetensors records besides the moments.
type trainState struct {
	Options  Options `json:"options"`
	Step     int     `json:"step"`
	Epoch    int     `json:"epoch"`
	Pos      int     `json:"pos"`
	Seed     uint64  `json:"seed"`
	Tokens   int64   `json:"tokens"`
	Elapsed  float64 `json:"elapsed_s"`
	DataSize int     `json:"data_tokens"` // to detect a changed training set on resume
}

const (
	optimizerFile = "optimizer.safetensors"
	metricsFile   = "metrics.csv"
	plotFile      = "loss.png"
)

// Save writes a checkpoint of the run to dir: model.safetensors (float32,
// so that a resume continues exactly) and config.json in the Hugging Face
// layout, optimizer.safetensors (the AdamW moments "m" and "v" in the
// Params layout, and the step, data position and options in its
// metadata), metrics.csv and the loss curve loss.png, as one unit with a
// manifest (see SaveCheckpoint).
func (t *Trainer) Save(dir string) error { return t.SaveCheckpoint(dir, nil) }

// Resume loads the checkpoint in dir written by Save and continues its run
// over the same training and validation tokens. override, if not nil, may
// change options (more steps, other intervals) before the trainer is built;
// the data order, batch shape and optimizer settings should stay as saved
// for the run to continue exactly as it would have.
//
// dir is verified against its manifest; a folder whose files are not all of
// one save (a save cut short by a kill or a full disk) is resumed from its
// newest complete save instead, or refused when it has none. The
// Trainer's Checkpoint and Notes say which folder was loaded and why.
func Resume(dir string, data, val []int32, override func(o *Options)) (*Trainer, error) {
	return ResumeWith(dir, data, val, override, nil)
}

// BaseLoader loads the base model of a LoRA run as float32 parameters.
type BaseLoader func(o *LoRAOptions) (*Params, error)

// ResumeWith is Resume with the loader of a LoRA run's base model (nil:
// LoadParams of its folder).
func ResumeWith(dir string, data, val []int32, override func(o *Options), loadBase BaseLoader) (*Trainer, error) {
	cp, notes, err := findCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("train: resume: %w", err)
	}
	if cp != dir {
		// The top of dir is not the newest complete save: make it so
		// now, so that the folder is a sound checkpoint even if this leg
		// has no step left to take.
		if err := publishSave(dir, cp); err != nil {
			return nil, fmt.Errorf("train: resume: restoring %s from %s: %w", dir, cp, err)
		}
		notes = append(notes, fmt.Sprintf("%s restored from %s", dir, cp))
	}
	dir = cp
	f, err := safetensors.Open(filepath.Join(dir, optimizerFile))
	if err != nil {
		return nil, fmt.Errorf("train: resume: %w", err)
	}
	defer f.Close()
	var st trainState
	dec := json.NewDecoder(strings.NewReader(f.Metadata()["jamba_train_state"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("train: resume: %s has no valid training state: %v", f.Name(), err)
	}
	if err := st.validate(f.Name(), len(data)); err != nil {
		return nil, err
	}
	var p *Params
	if lo := st.Options.LoRA; lo != nil {
		if loadBase == nil {
			loadBase = func(o *LoRAOptions) (*Params, error) {
				if o.Base == "" || o.BaseQuantize != "" {
					return nil, fmt.Errorf("train: resume: the base model %q (quantize %q) needs the command's loader", o.Base, o.BaseQuantize)
				}
				return LoadParams(o.Base)
			}
		}
		if p, err = loadBase(lo); err != nil {
			return nil, fmt.Errorf("train: resume: the base model of the adapter: %w", err)
		}
	} else {
		m, err := model.Load(dir, model.Options{})
		if err != nil {
			return nil, err
		}
		p, err = ParamsFromModel(m)
		m.Close()
		if err != nil {
			return nil, err
		}
	}
	opts := st.Options
	if override != nil {
		override(&opts)
	}
	if (opts.LoRA == nil) != (st.Options.LoRA == nil) {
		return nil, errors.New("train: resume: a run cannot switch between LoRA and full training")
	}
	t, err := NewTrainer(p, data, val, opts)
	if err != nil {
		return nil, err
	}
	if t.LoRA != nil {
		ad, err := lora.Load(dir, p.Config)
		if err != nil {
			return nil, fmt.Errorf("train: resume: %w", err)
		}
		if len(ad.Data) != len(t.LoRA.Adapter.Data) || len(ad.Modules) != len(t.LoRA.Adapter.Modules) {
			return nil, fmt.Errorf("train: resume: the adapter in %s has %d modules, %d parameters; the run's options make %d, %d",
				dir, len(ad.Modules), len(ad.Data), len(t.LoRA.Adapter.Modules), len(t.LoRA.Adapter.Data))
		}
		copy(t.LoRA.Adapter.Data, ad.Data)
	}
	for _, name := range []string{"m", "v"} {
		tt, err := f.Tensor(name)
		if err != nil {
			return nil, fmt.Errorf("train: resume: %w", err)
		}
		v, err := tt.Float32()
		if err != nil {
			return nil, err
		}
		if n := len(t.trained().Data); len(v) != n {
			return nil, fmt.Errorf("train: resume: %s: %s has %d values, the trained parameters %d", f.Name(), name, len(v), n)
		}
		if name == "m" {
			t.Opt.M = v
		} else {
			t.Opt.V = v
		}
	}
	t.Opt.Step = st.Step
	t.Data.Epoch, t.Data.Pos, t.Data.Seed = st.Epoch, st.Pos, st.Seed
	if err := t.Data.checkPos(); err != nil {
		return nil, fmt.Errorf("train: resume: %s: jamba_train_state: %w", f.Name(), err)
	}
	t.Checkpoint, t.Notes = dir, notes
	t.Tokens, t.Elapsed = st.Tokens, st.Elapsed
	if ms, err := ReadMetricsCSV(filepath.Join(dir, metricsFile)); err == nil {
		for _, m := range ms {
			if m.Step <= st.Step {
				t.Metrics = append(t.Metrics, m)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return t, nil
}

var metricsHeader = []string{"step", "tokens", "lr", "loss", "aux_loss", "grad_norm", "val_loss", "tokens_per_s", "elapsed_s"}

// WriteMetricsCSV writes the metrics log with a header line; an empty
// val_loss field means no validation at that step.
func WriteMetricsCSV(path string, ms []Metric) error {
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(metricsHeader)
	g := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	for _, m := range ms {
		w.Write([]string{strconv.Itoa(m.Step), strconv.FormatInt(m.Tokens, 10), g(m.LR), g(m.Loss), g(m.Aux),
			g(m.GradNorm), g(m.ValLoss), strconv.FormatFloat(m.TokensPerSec, 'f', 1, 64), strconv.FormatFloat(m.Elapsed, 'f', 3, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// ReadMetricsCSV reads a log written by WriteMetricsCSV.
func ReadMetricsCSV(path string) ([]Metric, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	if len(recs) == 0 || len(recs[0]) != len(metricsHeader) {
		return nil, fmt.Errorf("train: %s: not a metrics log", path)
	}
	var out []Metric
	for i, r := range recs[1:] {
		var v [9]float64
		for j, s := range r {
			if s == "" {
				v[j] = math.NaN()
				continue
			}
			if v[j], err = strconv.ParseFloat(s, 64); err != nil {
				return nil, fmt.Errorf("train: %s: line %d: %s: %v", path, i+2, metricsHeader[j], err)
			}
		}
		out = append(out, Metric{Step: int(v[0]), Tokens: int64(v[1]), LR: v[2], Loss: v[3], Aux: v[4], GradNorm: v[5],
			ValLoss: v[6], TokensPerSec: v[7], Elapsed: v[8]})
	}
	return out, nil
}
