package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/study"
	"github.com/jamba-go/jamba/study/tasks"
)

// studyInput resolves the token ids a study command looks at: --ids,
// --prompt (encoded with the model's tokenizer, BOS added as for
// generation), --file (encoded without special tokens, first maxTokens
// ids) or --task (one example of a synthetic task).
func studyInput(m *loadedModel, ids, prompt, file, task string, size int, seed uint64, maxTokens int) ([]int, string, error) {
	if err := oneInput(ids, prompt, file, task); err != nil {
		return nil, "", err
	}
	var out []int
	var what string
	switch {
	case ids != "":
		var err error
		if out, err = parseIDs(ids); err != nil {
			return nil, "", err
		}
		what = fmt.Sprintf("%d given ids", len(out))
	case prompt != "":
		tok, err := m.Tokenizer()
		if err != nil {
			return nil, "", err
		}
		out = tok.Encode(prompt, true)
		what = fmt.Sprintf("the prompt (%d tokens)", len(out))
	case file != "":
		tok, err := m.Tokenizer()
		if err != nil {
			return nil, "", err
		}
		if out, err = encodeFile(tok, file); err != nil {
			return nil, "", err
		}
		what = fmt.Sprintf("%s (%d tokens)", file, len(out))
	default:
		ts, err := tasks.ByName(task)
		if err != nil || len(ts) != 1 {
			return nil, "", fmt.Errorf("%w: --task: want one of mqar, induction, selective, fewshot", errUsage)
		}
		t := ts[0]
		if size <= 0 {
			sw := t.Sweep()
			size = sw[len(sw)/2]
		}
		ex := t.Generate(rand.New(rand.NewPCG(seed, 0)), max(size, t.MinSize()))
		out = ex.Tokens
		what = fmt.Sprintf("one %s example, %s %d (%d tokens, seed %d)", t.Name(), t.SizeName(), size, len(out), seed)
	}
	if maxTokens > 0 && len(out) > maxTokens {
		out = out[:maxTokens]
		what += fmt.Sprintf(", first %d", maxTokens)
	}
	if len(out) < 2 {
		return nil, "", fmt.Errorf("%w: %d tokens: need at least 2", errUsage, len(out))
	}
	return out, what, nil
}

// oneInput checks that exactly one input flag is given.
func oneInput(inputs ...string) error {
	n := 0
	for _, s := range inputs {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: give exactly one of --ids, --prompt, --file and --task", errUsage)
	}
	return nil
}

func checkIDs(m *model.Model, ids []int) error {
	for _, id := range ids {
		if id < 0 || id >= m.Config.VocabSize {
			return fmt.Errorf("token id %d is outside the model's vocabulary [0, %d)", id, m.Config.VocabSize)
		}
	}
	return nil
}

func runStudyAttention(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("study attention", "[--model DIR] (--ids 1,2,3 | --prompt TEXT | --file F | --task NAME) [--output F.safetensors] [--plots DIR]", `
Runs the model once over a sequence and reports the attention of every
head of every attention layer: the weights the forward pass uses
(softmax of the scaled query-key products, causal), row t the query.

Every head is scored twice. On the given sequence: its previous-token
score (mean weight on the position before the query) and its induction
score (mean weight, over queries whose token occurred earlier, on the
position after that token's latest earlier occurrence). And on the
standard induction probe: --probe-n sequences of BOS then --probe-len
distinct random ids from [--probe-lo, --probe-hi) repeated twice, where an
induction head attends from each token of the second copy to the token
after its twin in the first copy (score 1 for a perfect one; a head
spreading evenly scores about 1/position). Heads are ranked by the probe's
induction score.

--output writes one float32 tensor per attention layer,
"layers.{i}.attention", shape [heads, T, T], zeros above the diagonal.
--plots writes a heat map of each layer's heads, attention-layer{i}.png.`, stderr)
	mf := addModelFlags(fs, weightsOnly)
	idList := fs.String("ids", "", "token ids, comma-separated")
	prompt := fs.String("prompt", "", "text, encoded with the model's tokenizer (BOS added)")
	file := fs.String("file", "", "text file, encoded without special tokens (first --max-tokens)")
	task := fs.String("task", "", "one example of a synthetic task: mqar, induction, selective or fewshot")
	size := fs.Int("size", 0, "the --task example's size (pairs, length or shots; 0: the middle of its sweep)")
	seed := fs.Uint64("seed", 1, "seed of the --task example and of the probe")
	maxTokens := fs.Int("max-tokens", 256, "use at most this many tokens of the input (0: all)")
	output := fs.String("output", "", "write the maps to this safetensors file")
	plots := fs.String("plots", "", "write a heat map per attention layer into this folder")
	probeN := fs.Int("probe-n", 8, "sequences of the induction probe (0: no probe)")
	probeLen := fs.Int("probe-len", 24, "length of the probe's random sequence (it is repeated once)")
	probeLo := fs.Int("probe-lo", 8, "smallest id of the probe's random tokens")
	probeHi := fs.Int("probe-hi", 0, "end of the probe's id range (0: the vocabulary size)")
	top := fs.Int("top", 10, "heads to list (0: all)")
	asJSON := fs.Bool("json", false, "print the scores as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := oneInput(*idList, *prompt, *file, *task); err != nil {
		return err
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	ids, what, err := studyInput(m, *idList, *prompt, *file, *task, *size, *seed, *maxTokens)
	if err != nil {
		return err
	}
	if err := checkIDs(m.Model, ids); err != nil {
		return err
	}
	maps, err := study.AttentionMaps(m.Model, ids)
	if err != nil {
		return err
	}
	if len(maps) == 0 {
		return fmt.Errorf("the model has no attention layer (attn_layer_period %d, offset %d, %d layers)",
			m.Config.AttnLayerPeriod, m.Config.AttnLayerOffset, m.Config.NumHiddenLayers)
	}
	seqs := make([][]int, len(maps))
	for i := range seqs {
		seqs[i] = ids
	}
	onInput := study.ScoreHeads(maps, seqs)
	var probe []study.HeadScores
	if *probeN > 0 {
		hi := *probeHi
		if hi <= 0 {
			hi = m.Config.VocabSize
		}
		if *probeLo < 0 || hi > m.Config.VocabSize {
			return fmt.Errorf("%w: probe ids [%d, %d) outside the vocabulary of %d", errUsage, *probeLo, hi, m.Config.VocabSize)
		}
		if probe, err = study.InductionProbe(m.Model, rand.New(rand.NewPCG(*seed, 1)), *probeN, *probeLen, *probeLo, hi); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if *output != "" {
		meta := map[string]string{"format": "pt", "ids": joinIDs(ids)}
		if err := study.WriteAttentionSafetensors(*output, maps, meta); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %d attention layers to %s\n", len(maps), *output)
	}
	if *plots != "" {
		if err := os.MkdirAll(*plots, 0o755); err != nil {
			return err
		}
		for i := range maps {
			path := filepath.Join(*plots, fmt.Sprintf("attention-layer%d.png", maps[i].Layer))
			if err := study.PlotAttention(path, &maps[i], onInput); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "wrote %d heat maps to %s\n", len(maps), *plots)
	}
	type row struct {
		Layer          int     `json:"layer"`
		Head           int     `json:"head"`
		ProbeInduction float64 `json:"probe_induction"`
		ProbePrev      float64 `json:"probe_prev_token"`
		Induction      float64 `json:"induction"`
		PrevToken      float64 `json:"prev_token"`
	}
	rows := make([]row, len(onInput))
	for i, s := range onInput {
		rows[i] = row{Layer: s.Layer, Head: s.Head, Induction: s.Induction, PrevToken: s.PrevToken,
			ProbeInduction: math.NaN(), ProbePrev: math.NaN()}
		if probe != nil {
			rows[i].ProbeInduction, rows[i].ProbePrev = probe[i].Induction, probe[i].PrevToken
		}
	}
	sort.SliceStable(rows, func(a, b int) bool {
		if probe != nil {
			return rows[a].ProbeInduction > rows[b].ProbeInduction
		}
		return rows[a].Induction > rows[b].Induction
	})
	if *asJSON {
		if probe == nil {
			for i := range rows {
				rows[i].ProbeInduction, rows[i].ProbePrev = 0, 0
			}
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"tokens": len(ids), "heads": rows})
	}
	fmt.Fprintf(stdout, "%d attention layers x %d heads over %s", len(maps), m.Config.NumAttentionHeads, what)
	if probe != nil {
		fmt.Fprintf(stdout, "; induction probe: %d sequences of %d random ids repeated", *probeN, *probeLen)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "rank\tlayer\thead\tprobe induction\tprobe prev-token\tinduction (input)\tprev-token (input)\t")
	n := len(rows)
	if *top > 0 {
		n = min(n, *top)
	}
	for i, r := range rows[:n] {
		pi, pp := "-", "-"
		if probe != nil {
			pi, pp = fmt.Sprintf("%.3f", r.ProbeInduction), fmt.Sprintf("%.3f", r.ProbePrev)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%.3f\t%.3f\t\n", i+1, r.Layer, r.Head, pi, pp, r.Induction, r.PrevToken)
	}
	return tw.Flush()
}

func runStudyState(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("study state", "[--model DIR] (--file F | --prompt TEXT | --ids 1,2,3 | --task NAME) [--plots DIR]", `
Runs the model once over a sequence and reports, for every Mamba layer,
how far back its state remembers:

  dt       the step Δ (after dt_proj and softplus), averaged over the
           tokens, per channel: its median and 10th-90th percentiles
  decay    the per-token decay exp(Δ·A) of each state dimension, averaged
           over tokens and channels: the fastest and slowest dimension
  memory   the effective memory length of each state component (channel,
           dimension): ln(100)/(|A|·mean Δ), the tokens after which it keeps
           1% of its value; median, 90th percentile and maximum
  state    the norm of the whole state after the last token, and its
           largest value over the positions

Then, unless --no-importance, which layers matter: each layer's mixer
output is zeroed in turn (its FFN still runs) and the change of the
next-token predictions is measured: mean KL divergence from the intact
model (nats), change of the loss, relative change of the logits.

--plots writes state.png (four panels: dt distribution, decay per state
dimension, state norm over positions, memory-length distribution, one line
per Mamba layer) and importance.png.`, stderr)
	mf := addModelFlags(fs, weightsOnly)
	idList := fs.String("ids", "", "token ids, comma-separated")
	prompt := fs.String("prompt", "", "text, encoded with the model's tokenizer (BOS added)")
	file := fs.String("file", "", "text file, encoded without special tokens (first --max-tokens)")
	task := fs.String("task", "", "one example of a synthetic task: mqar, induction, selective or fewshot")
	size := fs.Int("size", 0, "the --task example's size (0: the middle of its sweep)")
	seed := fs.Uint64("seed", 1, "seed of the --task example")
	maxTokens := fs.Int("max-tokens", 512, "use at most this many tokens of the input (0: all)")
	plots := fs.String("plots", "", "write state.png and importance.png into this folder")
	noImp := fs.Bool("no-importance", false, "skip the layer-importance pass (one forward per layer)")
	asJSON := fs.Bool("json", false, "print the tables as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := oneInput(*idList, *prompt, *file, *task); err != nil {
		return err
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	ids, what, err := studyInput(m, *idList, *prompt, *file, *task, *size, *seed, *maxTokens)
	if err != nil {
		return err
	}
	if err := checkIDs(m.Model, ids); err != nil {
		return err
	}
	states, err := study.StateStats(m.Model, ids)
	if err != nil {
		return err
	}
	var base float64
	var imps []study.LayerImportance
	if !*noImp {
		if base, imps, err = study.LayerImportances(m.Model, ids); err != nil {
			return err
		}
	}
	if *plots != "" {
		if err := os.MkdirAll(*plots, 0o755); err != nil {
			return err
		}
		if len(states) > 0 {
			if err := study.PlotState(filepath.Join(*plots, "state.png"), states); err != nil {
				return err
			}
		}
		if imps != nil {
			if err := study.PlotImportance(filepath.Join(*plots, "importance.png"), imps); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "plots in %s\n", *plots)
	}
	type layerRow struct {
		Layer      int       `json:"layer"`
		Dt         []float64 `json:"dt_p10_p50_p90"`
		DecayMin   float64   `json:"decay_fastest"`
		DecayMax   float64   `json:"decay_slowest"`
		Memory     []float64 `json:"memory_p50_p90_max"`
		FinalNorm  float64   `json:"state_norm_last"`
		MaxNorm    float64   `json:"state_norm_max"`
		DecayPerDN []float64 `json:"decay_per_state_dim"`
	}
	var rows []layerRow
	for i := range states {
		s := &states[i]
		r := layerRow{Layer: s.Layer, Dt: s.DtQuantiles(0.1, 0.5, 0.9), Memory: s.MemoryQuantiles(0.5, 0.9, 1),
			FinalNorm: s.StateNorm[len(s.StateNorm)-1], DecayPerDN: s.Decay, DecayMin: math.Inf(1)}
		for _, d := range s.Decay {
			r.DecayMin, r.DecayMax = min(r.DecayMin, d), max(r.DecayMax, d)
		}
		for _, v := range s.StateNorm {
			r.MaxNorm = max(r.MaxNorm, v)
		}
		rows = append(rows, r)
	}
	if *asJSON {
		type impRow struct {
			Layer       int     `json:"layer"`
			Mixer       string  `json:"mixer"`
			KL          float64 `json:"kl"`
			LossDelta   float64 `json:"loss_delta"`
			LogitChange float64 `json:"logit_change"`
		}
		var ir []impRow
		for _, im := range imps {
			ir = append(ir, impRow{im.Layer, im.Mixer.String(), im.KL, im.LossDelta, im.LogitChange})
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"tokens": len(ids), "mamba_layers": rows, "loss": base, "importance": ir})
	}
	fmt.Fprintf(stdout, "%d Mamba layers over %s\n\n", len(states), what)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if len(rows) > 0 {
		fmt.Fprintln(tw, "layer\tdt median [p10, p90]\tdecay/token fastest..slowest dim\tmemory (tokens) median / p90 / max\tstate norm last (max)\t")
		for _, r := range rows {
			fmt.Fprintf(tw, "%d\t%.4f [%.4f, %.4f]\t%.3f .. %.4f\t%.1f / %.1f / %.0f\t%.3g (%.3g)\t\n", r.Layer, r.Dt[1], r.Dt[0], r.Dt[2],
				r.DecayMin, r.DecayMax, r.Memory[0], r.Memory[1], r.Memory[2], r.FinalNorm, r.MaxNorm)
		}
		tw.Flush()
	}
	if imps != nil {
		fmt.Fprintf(stdout, "\nlayer importance (mixer output zeroed), loss %.4f intact:\n\n", base)
		sorted := append([]study.LayerImportance(nil), imps...)
		sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].KL > sorted[b].KL })
		rank := map[int]int{}
		for i, im := range sorted {
			rank[im.Layer] = i + 1
		}
		fmt.Fprintln(tw, "layer\tmixer\tKL (nats)\tloss change\tlogit change\trank\t")
		for _, im := range imps {
			fmt.Fprintf(tw, "%d\t%s\t%.4f\t%+.4f\t%.3f\t%d\t\n", im.Layer, im.Mixer, im.KL, im.LossDelta, im.LogitChange, rank[im.Layer])
		}
		tw.Flush()
	}
	return nil
}

func runStudyTasks(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("study tasks", "--model DIR [--tasks LIST] [--examples N] [--offset N] [--bos-id ID] [--csv F]", `
Scores a model on the synthetic in-context tasks at every size of their
sweeps. The tasks use token ids 0-127 as their own vocabulary (no
tokenizer): 0 pad, 1 BOS, 2 separator, 3 copy marker, 4 noise, content
from 8 on.

  mqar       multi-query associative recall: key-value pairs, then the
             keys again in random order; each value is graded (size: pairs)
  induction  a random sequence, a separator, the sequence again; the
             second copy is graded (size: length)
  selective  selective copying: 8 tokens scattered among noise, a copy
             marker, the 8 tokens in order, graded (size: noisy length)
  fewshot    k labelled examples (4 input tokens whose class is fixed by
             which half of the input range they come from, a separator,
             one of two label words drawn anew per sequence), then a query:
             only its label is graded (size: shots). Accuracy counts only
             the right label word; "format" is the share of answers that
             are one of the two label words at all

Accuracy is the share of graded tokens the model predicts exactly
(arg-max); loss is their mean cross-entropy. Models trained by
'jamba study ablate' know these tasks; any other checkpoint is tested
in-context on arbitrary ids. A text model's lowest ids are usually
control and byte tokens it never saw in running text: --offset N feeds
task id j as model id j+N (the content then lies among ordinary word
pieces), and --bos-id its own start token for the tasks' BOS. Predictions
are still taken over the model's whole vocabulary.`, stderr)
	mf := addModelFlags(fs, weightsOnly)
	taskList := fs.String("tasks", "all", "comma-separated tasks")
	examples := fs.Int("examples", 64, "examples per task and size")
	seed := fs.Uint64("seed", 0x65766131, "seed of the examples (the default is the one jamba study ablate evaluates with)")
	csvPath := fs.String("csv", "", "also write the results to this CSV file")
	offset := fs.Int("offset", 0, "feed task id j as model id j+N")
	bosID := fs.Int("bos-id", -1, "model id for the tasks' BOS (default: shifted like the rest)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *offset < 0 {
		return fmt.Errorf("%w: --offset %d must not be negative", errUsage, *offset)
	}
	ts, err := tasks.ByName(*taskList)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	if m.Config.VocabSize < tasks.Vocab+*offset {
		return fmt.Errorf("the model's vocabulary (%d) is smaller than the tasks' %d ids from offset %d", m.Config.VocabSize, tasks.Vocab, *offset)
	}
	var f study.Forwarder = &study.ModelForwarder{M: m.Model}
	if *offset != 0 || *bosID >= 0 {
		if f, err = study.NewMappedForwarder(f, study.OffsetMap(tasks.Vocab, *offset, *bosID)); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	rs, err := study.EvalTasks(f, ts, *examples, *seed, 16)
	if err != nil {
		return err
	}
	if *csvPath != "" {
		if err := study.WriteResultsCSV(*csvPath, []*study.RunResult{{Variant: study.Variant{Name: m.Name}, Seed: 0, ValLoss: math.NaN(), Tasks: rs}}); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "task\tsize\taccuracy\tloss\tformat\t")
	for _, r := range rs {
		f := "-"
		if !math.IsNaN(r.Format) {
			f = fmt.Sprintf("%.3f", r.Format)
		}
		fmt.Fprintf(tw, "%s\t%d %s\t%.3f\t%.3f\t%s\t\n", r.Task, r.Size, r.SizeName, r.Accuracy, r.Loss, f)
	}
	return tw.Flush()
}
