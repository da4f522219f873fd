package study

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/study/tasks"
	"github.com/jamba-go/jamba/train"
)

// AblateOptions configure an ablation: every variant trained from its own
// initialisation for each seed, all on the same data for a given seed and
// for the same number of tokens, then evaluated.
type AblateOptions struct {
	Shape    Shape
	Variants []Variant
	// Seeds is the number of seeds (1, 2, ...) of the variants named in
	// SeedVariants (all variants when it is empty); the others run seed 1
	// only.
	Seeds        int
	SeedVariants []string
	// Train holds the trainer's options (Seq, Batch, Steps, LR, ...);
	// Seed and Workers are set per run.
	Train train.Options
	// Tasks are the tasks of the training mix (when Data is nil) and of the
	// evaluation.
	Tasks []tasks.Task
	// Data and Val, when Data is set, are a tokenized text corpus to train
	// on and its held-out part; otherwise the model trains on a task mix
	// drawn from the seed and validates on a mix drawn from seed 0.
	Data, Val []int32
	// AllTokens trains a task mix on the cross-entropy of every token, as
	// on text; by default the loss (in training and held out) counts only
	// the graded answers, the one part of a task sequence that can be
	// predicted (keys and copied sequences are random).
	AllTokens bool
	// EvalExamples is the number of examples per task and size.
	EvalExamples int
	// Workers is the number of runs trained at once, each on one thread.
	Workers int
	// TimeLimit bounds the whole ablation (0: none): each run gets an equal
	// share of what is left when it starts, and stops early (flagged
	// incomplete in the results) when its share runs out.
	TimeLimit time.Duration
	// Out is the folder for results.csv, the plots and each run's
	// checkpoint (runs/<variant>-s<seed>/).
	Out string
	// Log receives one line per finished run and progress lines.
	Log io.Writer
}

// RunResult is one trained model's outcome.
type RunResult struct {
	Variant        Variant
	Seed           int
	Total, Active  int64
	Steps, Planned int
	Tokens         int64
	TrainSeconds   float64
	EvalSeconds    float64
	ValLoss        float64
	Metrics        []train.Metric
	Tasks          []TaskResult
	// Induction is the best induction score of any attention head on the
	// induction task (inductionProbe examples), at layer InductionLayer,
	// head InductionHead; NaN without attention layers.
	Induction                     float64
	InductionLayer, InductionHead int
	Dir                           string
}

// The induction score of every run: inductionExamples examples of the
// induction task of size inductionLength, from a fixed seed.
const (
	inductionExamples = 8
	inductionLength   = 24
	inductionSeed     = 0x696e64
)

// Complete reports whether the run did all its planned steps.
func (r *RunResult) Complete() bool { return r.Steps == r.Planned }

// job is one (variant, seed) run.
type job struct {
	v    Variant
	seed int
}

func (o *AblateOptions) jobs() []job {
	multi := map[string]bool{}
	for _, n := range o.SeedVariants {
		multi[n] = true
	}
	var js []job
	for s := 1; s <= max(o.Seeds, 1); s++ {
		for _, v := range o.Variants {
			if s == 1 || len(multi) == 0 || multi[v.Name] {
				js = append(js, job{v, s})
			}
		}
	}
	return js
}

// Ablate runs the ablation and writes results.csv, loss.png and
// tasks.png into o.Out. It returns the runs' results in job order (seed
// by seed, variants in the given order).
func Ablate(ctx context.Context, o AblateOptions) ([]*RunResult, error) {
	if len(o.Variants) == 0 {
		return nil, errors.New("study: no variants to train")
	}
	if o.Data == nil && len(o.Tasks) == 0 {
		return nil, errors.New("study: no data and no tasks to train on")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.MkdirAll(filepath.Join(o.Out, "runs"), 0o755); err != nil {
		return nil, err
	}
	js := o.jobs()
	results := make([]*RunResult, len(js))
	start := time.Now()
	var mu sync.Mutex
	next, finished := 0, 0
	var firstErr error
	workers := max(1, min(o.Workers, len(js)))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= len(js) || firstErr != nil || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				// An equal share of the time left among the runs not yet
				// started (this one included), with workers running at once.
				var limit time.Duration
				if o.TimeLimit > 0 {
					left := o.TimeLimit - time.Since(start)
					limit = max(left*time.Duration(workers)/time.Duration(len(js)-i), time.Second)
				}
				mu.Unlock()
				r, err := o.run(ctx, js[i], limit)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("study: %s seed %d: %w", js[i].v.Name, js[i].seed, err)
				}
				results[i] = r
				finished++
				if r != nil {
					note := ""
					if !r.Complete() {
						note = fmt.Sprintf(" (stopped at step %d of %d by the time limit)", r.Steps, r.Planned)
					}
					fmt.Fprintf(o.Log, "[%d/%d] %-12s seed %d: val loss %.4f, %s, induction head %.2f, %.0fs training + %.0fs evaluation%s\n",
						finished, len(js), r.Variant.Name, r.Seed, r.ValLoss, summary(r.Tasks), r.Induction, r.TrainSeconds, r.EvalSeconds, note)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	var done []*RunResult
	for _, r := range results {
		if r != nil {
			done = append(done, r)
		}
	}
	if err := WriteResultsCSV(filepath.Join(o.Out, "results.csv"), done); err != nil {
		return done, err
	}
	if err := PlotLossCurves(filepath.Join(o.Out, "loss.png"), done); err != nil {
		return done, err
	}
	if err := PlotTaskSweeps(filepath.Join(o.Out, "tasks.png"), done); err != nil {
		return done, err
	}
	return done, ctx.Err()
}

// summary is a run's mean accuracy per task, for the log.
func summary(rs []TaskResult) string {
	s := ""
	var name string
	var sum float64
	var n int
	flush := func() {
		if n > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s %.2f", name, sum/float64(n))
		}
	}
	for _, r := range rs {
		if r.Task != name {
			flush()
			name, sum, n = r.Task, 0, 0
		}
		sum += r.Accuracy
		n++
	}
	flush()
	return "accuracy " + s
}

// run trains and evaluates one (variant, seed).
func (o *AblateOptions) run(ctx context.Context, j job, limit time.Duration) (*RunResult, error) {
	cfg := o.Shape.Config(j.v)
	if o.Data != nil {
		cfg.VocabSize = o.Shape.Vocab
	}
	total, active := cfg.ParamCount()
	p := train.InitParams(cfg, uint64(j.seed))
	opts := o.Train
	opts.Seed = uint64(j.seed)
	opts.Workers = 1
	opts.SaveEvery = 0
	data, val := o.Data, o.Val
	var dataMask, valMask []bool
	if data == nil {
		// One epoch's worth of rows: the loader serves them in a seeded
		// order, each row once, so rows stay aligned with example starts.
		rows := opts.Steps*opts.Batch*opts.Accum + 1
		data, dataMask = tasks.StreamGraded(rand.New(rand.NewPCG(uint64(j.seed), 0x7461736b)), o.Tasks, opts.Seq, rows)
		valRows := max(1, opts.EvalTokens/opts.Seq)
		val, valMask = tasks.StreamGraded(rand.New(rand.NewPCG(0, 0x76616c)), o.Tasks, opts.Seq, valRows)
	}
	tr, err := train.NewTrainer(p, data, val, opts)
	if err != nil {
		return nil, err
	}
	if dataMask != nil && !o.AllTokens {
		if err := tr.SetLossMask(dataMask, valMask); err != nil {
			return nil, err
		}
	}
	tr.Backprop.Serial = true
	dir := filepath.Join(o.Out, "runs", fmt.Sprintf("%s-s%d", fileName(j.v.Name), j.seed))
	r := &RunResult{Variant: j.v, Seed: j.seed, Total: total, Active: active, Planned: opts.Steps, Dir: dir}
	t0 := time.Now()
	onStep := func(m train.Metric) {
		if !math.IsNaN(m.ValLoss) {
			fmt.Fprintf(o.Log, "  %-12s seed %d: step %d/%d  loss %.4f  held-out %.4f  %.0f tok/s\n",
				j.v.Name, j.seed, m.Step, opts.Steps, m.Loss, m.ValLoss, m.TokensPerSec)
		}
	}
	if err := tr.Run(ctx, train.RunOptions{Dir: dir, TimeLimit: limit, OnStep: onStep}); err != nil {
		return nil, err
	}
	r.TrainSeconds = time.Since(t0).Seconds()
	r.Metrics = tr.Metrics
	r.Steps = tr.StepsDone()
	r.Tokens = tr.Tokens
	r.ValLoss = math.NaN()
	if n := len(tr.Metrics); n > 0 {
		if math.IsNaN(tr.Metrics[n-1].ValLoss) {
			// A run stopped by the time limit: validate its last state.
			if r.ValLoss, err = tr.Evaluate(); err != nil {
				return nil, err
			}
			tr.Metrics[n-1].ValLoss = r.ValLoss
		} else {
			r.ValLoss = tr.Metrics[n-1].ValLoss
		}
	}
	t1 := time.Now()
	if r.Tasks, err = EvalTasks(EngineForwarder{tr.Backprop}, o.Tasks, o.EvalExamples, 0x65766131, 16); err != nil {
		return nil, err
	}
	r.Induction, r.InductionLayer, r.InductionHead = math.NaN(), -1, -1
	if cfg.AttnLayerPeriod <= cfg.NumHiddenLayers {
		m, err := model.Load(dir, model.Options{})
		if err != nil {
			return nil, err
		}
		hs, err := TaskInductionScores(m, rand.New(rand.NewPCG(inductionSeed, 0)), inductionExamples, inductionLength)
		m.Close()
		if err != nil {
			return nil, err
		}
		if b, ok := BestInductionHead(hs); ok {
			r.Induction, r.InductionLayer, r.InductionHead = b.Induction, b.Layer, b.Head
		}
	}
	r.EvalSeconds = time.Since(t1).Seconds()
	return r, nil
}

// fileName makes a variant name safe for a folder name ("1:7" → "1-7").
func fileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == ':' || c == '/' || c == '+' {
			b[i] = '-'
		}
	}
	return string(b)
}

// WriteResultsCSV writes one line per run, task and size: the run's
// variant, seed, parameter counts, steps and tokens, training time and
// final validation loss, and the task's loss, accuracy and format rate.
// The file is written atomically.
func WriteResultsCSV(path string, rs []*RunResult) error {
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"variant", "seed", "params_total", "params_active", "steps", "planned_steps", "tokens", "train_s",
		"val_loss", "induction_score", "induction_layer", "induction_head", "task", "size_name", "size", "examples", "task_loss", "accuracy", "format_rate"})
	ff := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'f', 5, 64)
	}
	for _, r := range rs {
		for _, t := range r.Tasks {
			w.Write([]string{r.Variant.Name, strconv.Itoa(r.Seed), strconv.FormatInt(r.Total, 10), strconv.FormatInt(r.Active, 10),
				strconv.Itoa(r.Steps), strconv.Itoa(r.Planned), strconv.FormatInt(r.Tokens, 10), ff(r.TrainSeconds), ff(r.ValLoss),
				ff(r.Induction), strconv.Itoa(r.InductionLayer), strconv.Itoa(r.InductionHead), t.Task, t.SizeName, strconv.Itoa(t.Size), strconv.Itoa(t.Examples), ff(t.Loss), ff(t.Accuracy), ff(t.Format)})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// WriteSummary prints a table of the runs: per variant, the mean and range
// over seeds of the final held-out loss and of each task's accuracy
// averaged over its sizes.
func WriteSummary(w io.Writer, rs []*RunResult) error {
	var taskNames []string
	seen := map[string]bool{}
	for _, r := range rs {
		for _, t := range r.Tasks {
			if !seen[t.Task] {
				seen[t.Task] = true
				taskNames = append(taskNames, t.Task)
			}
		}
	}
	fmt.Fprintf(w, "%-12s %5s %9s %-21s %-17s", "variant", "seeds", "active", "held-out loss", "induction head")
	for _, t := range taskNames {
		fmt.Fprintf(w, " %-17s", t)
	}
	fmt.Fprintln(w)
	for _, name := range variantOrder(rs) {
		var loss, ind []float64
		acc := map[string][]float64{}
		var active int64
		for _, r := range rs {
			if r.Variant.Name != name {
				continue
			}
			active = r.Active
			loss = append(loss, r.ValLoss)
			ind = append(ind, r.Induction)
			for _, t := range taskNames {
				acc[t] = append(acc[t], meanAccuracy(r.Tasks, t))
			}
		}
		m, lo, hi := spread(loss)
		fmt.Fprintf(w, "%-12s %5d %9d %-21s", name, len(loss), active, fmt.Sprintf("%.3f [%.3f, %.3f]", m, lo, hi))
		if im, ilo, ihi := spread(ind); math.IsNaN(im) {
			fmt.Fprintf(w, " %-17s", "-")
		} else {
			fmt.Fprintf(w, " %-17s", fmt.Sprintf("%.2f [%.2f, %.2f]", im, ilo, ihi))
		}
		for _, t := range taskNames {
			m, lo, hi := spread(acc[t])
			fmt.Fprintf(w, " %-17s", fmt.Sprintf("%.2f [%.2f, %.2f]", m, lo, hi))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "mean [min, max] over seeds; accuracy averaged over each task's sizes; induction head: the best head's\n"+
		"score on %d induction examples of %d ids (a head spreading its weight evenly over the past: %.3f)\n",
		inductionExamples, inductionLength, inductionBaseline())
	return nil
}

// inductionBaseline is the induction score of an even spread on the
// examples every run's induction score is taken on.
func inductionBaseline() float64 {
	rng := rand.New(rand.NewPCG(inductionSeed, 0))
	seqs := make([][]int, inductionExamples)
	for i := range seqs {
		seqs[i] = tasks.Induction{}.Generate(rng, inductionLength).Tokens
	}
	return UniformInductionScore(seqs)
}

// meanAccuracy is a task's accuracy averaged over its sizes.
func meanAccuracy(rs []TaskResult, task string) float64 {
	var s float64
	var n int
	for _, r := range rs {
		if r.Task == task {
			s += r.Accuracy
			n++
		}
	}
	return s / float64(max(n, 1))
}
