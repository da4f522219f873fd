package study

import (
	"context"
	"encoding/csv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/study/tasks"
	"github.com/jamba-go/jamba/train"
)

func tinyAblation(t *testing.T) AblateOptions {
	t.Helper()
	all := Variants(8)
	vs, err := SelectVariants(all, "mamba,1:7,1:3+moe,1:7-nonorm")
	if err != nil {
		t.Fatal(err)
	}
	o := train.DefaultOptions()
	o.Seq, o.Batch, o.Steps, o.Warmup, o.EvalEvery, o.EvalTokens = 40, 2, 3, 1, 2, 80
	return AblateOptions{
		Shape:    Shape{Vocab: tasks.Vocab, Hidden: 16, Layers: 8, Heads: 2, Intermediate: 24, DState: 4, Experts: 4, TieEmbeddings: true},
		Variants: vs, Seeds: 2, SeedVariants: []string{"mamba"},
		Train: o, Tasks: tasks.All(), EvalExamples: 3, Workers: 2, Out: t.TempDir(),
	}
}

// TestAblateTiny runs the whole driver on a budget of seconds: four
// variants, a second seed for one, and checks the bookkeeping: every run's
// tokens equal, active parameters matched, a line per run, task and size
// in results.csv, the plots and a loadable checkpoint per run.
func TestAblateTiny(t *testing.T) {
	opts := tinyAblation(t)
	rs, err := Ablate(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 5 {
		t.Fatalf("%d runs, want 4 variants + 1 more seed", len(rs))
	}
	sizes := 0
	for _, task := range opts.Tasks {
		sizes += len(task.Sweep())
	}
	_, ref := opts.Shape.Config(Variant{AttnPeriod: 8, AttnOffset: 4}).ParamCount()
	for _, r := range rs {
		if !r.Complete() || r.Tokens != int64(opts.Train.Steps*opts.Train.Batch*opts.Train.Seq) {
			t.Errorf("%s seed %d: %d of %d steps, %d tokens", r.Variant.Name, r.Seed, r.Steps, r.Planned, r.Tokens)
		}
		// The MLP width moves in steps of 8: one step changes the active
		// count by 8·3·H per dense-equivalent MLP, 12 of them with MoE
		// (4 dense + 4×2 experts) — 4608 at H = 16, under 6% of ~80k.
		if d := math.Abs(float64(r.Active-ref)) / float64(ref); d > 0.06 {
			t.Errorf("%s: %d active parameters, reference %d", r.Variant.Name, r.Active, ref)
		}
		if math.IsNaN(r.ValLoss) || len(r.Tasks) != sizes {
			t.Errorf("%s: val loss %v, %d task results (want %d)", r.Variant.Name, r.ValLoss, len(r.Tasks), sizes)
		}
		m, err := model.Load(r.Dir, model.Options{})
		if err != nil {
			t.Fatalf("%s: checkpoint: %v", r.Variant.Name, err)
		}
		if r.Variant.NoInnerNorms == m.Config.MambaInnerLayernorms || (r.Variant.MoE != (m.Config.NumExperts > 1)) || !m.Config.TieWordEmbeddings {
			t.Errorf("%s: saved config does not match the variant", r.Variant.Name)
		}
		// The held-out loss is the mean cross-entropy of the answers only:
		// recomputed from the saved checkpoint with the inference forward
		// (model, not train) over the same held-out rows. Both are float32
		// passes summing in different orders; per-token differences are
		// about 1e-6, so 1e-4 relative is ample and far below what counting
		// other tokens would change (their loss is that of random ids).
		// The best induction head lies in an attention layer; pure Mamba has
		// none.
		if m.Config.AttnLayerPeriod > m.Config.NumHiddenLayers {
			if !math.IsNaN(r.Induction) {
				t.Errorf("%s: induction score %v without attention", r.Variant.Name, r.Induction)
			}
		} else if !(r.Induction >= 0 && r.Induction <= 1) || m.Config.Mixer(r.InductionLayer) != model.Attention {
			t.Errorf("%s: induction score %v at layer %d", r.Variant.Name, r.Induction, r.InductionLayer)
		}
		if want := answerLoss(t, m, opts); math.Abs(r.ValLoss-want) > 1e-4*want {
			t.Errorf("%s: held-out loss %.6f, answers' loss from the checkpoint %.6f", r.Variant.Name, r.ValLoss, want)
		}
		m.Close()
	}
	f, err := os.Open(filepath.Join(opts.Out, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1+len(rs)*sizes {
		t.Fatalf("results.csv has %d lines, want %d", len(lines), 1+len(rs)*sizes)
	}
	for _, name := range []string{"loss.png", "tasks.png"} {
		if st, err := os.Stat(filepath.Join(opts.Out, name)); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// answerLoss is the mean cross-entropy of the graded answers of the
// ablation's held-out rows under model m.
func answerLoss(t *testing.T, m *model.Model, o AblateOptions) float64 {
	t.Helper()
	seq := o.Train.Seq
	ids, graded := tasks.StreamGraded(rand.New(rand.NewPCG(0, 0x76616c)), o.Tasks, seq, max(1, o.Train.EvalTokens/seq))
	f := &ModelForwarder{M: m}
	V := f.Vocab()
	var sum float64
	var n int
	for r := 0; r*seq < len(ids); r++ {
		row := make([]int, seq)
		for j := range row {
			row[j] = int(ids[r*seq+j])
		}
		lg, err := f.Logits([][]int{row})
		if err != nil {
			t.Fatal(err)
		}
		for p := 1; p < seq; p++ {
			if !graded[r*seq+p] {
				continue
			}
			l := lg[0][(p-1)*V : p*V]
			mx := math.Inf(-1)
			for _, v := range l {
				mx = max(mx, float64(v))
			}
			var z float64
			for _, v := range l {
				z += math.Exp(float64(v) - mx)
			}
			sum += mx + math.Log(z) - float64(l[row[p]])
			n++
		}
	}
	if n == 0 {
		t.Fatal("no answers in the held-out rows")
	}
	return sum / float64(n)
}

// TestAblateTimeLimit: a budget that ends at once stops every run after
// its first step, and the results say so.
func TestAblateTimeLimit(t *testing.T) {
	opts := tinyAblation(t)
	opts.Variants = opts.Variants[:2]
	opts.Seeds = 1
	opts.Train.Steps = 20000 // far more than a second's worth
	opts.TimeLimit = 1       // nanosecond: every run gets the one-second floor
	rs, err := Ablate(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Complete() || r.Steps < 1 || math.IsNaN(r.ValLoss) {
			t.Errorf("%s: %d of %d steps, val loss %v", r.Variant.Name, r.Steps, r.Planned, r.ValLoss)
		}
	}
}
