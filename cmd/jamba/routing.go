package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/jamba-go/jamba/model"
)

func init() {
	register(&command{name: "routing", summary: "report how the MoE layers route the tokens of a text file to their experts", run: runRouting})
}

// routingLayer is one MoE layer's line of the report.
type routingLayer struct {
	Layer      int       `json:"layer"` // decoder layer index
	Load       []float64 `json:"load"`  // each expert's share of the top-k selections
	CV         float64   `json:"load_cv"`
	MaxOverMin float64   `json:"load_max_over_min"` // +Inf (0 in JSON) when an expert is never chosen
	Entropy    float64   `json:"mean_entropy"`      // nats; log E is uniform
	Aux        float64   `json:"aux"`               // this layer's load-balancing loss
	TopPairs   []string  `json:"top_pairs,omitempty"`
}

type routingReport struct {
	Tokens  int            `json:"tokens"`
	Experts int            `json:"experts"`
	TopK    int            `json:"top_k"`
	Aux     float64        `json:"aux"` // pooled over the layers, as training computes it
	Layers  []routingLayer `json:"layers"`
}

func runRouting(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("routing", "[--model DIR] (--file F | --ids 1,2,3) [--context N] [--max-tokens N] [--json]", `
Runs the model over a text file (tokenized without special tokens, in
non-overlapping windows of --context tokens, each from an empty state, as
'jamba perplexity' does) and reports how each MoE layer's router spreads the
tokens over its experts: each expert's share of the top-k selections, the
coefficient of variation and the max/min ratio of those shares (0 and 1 for
a perfectly even load), the routers' mean entropy in nats (log E when every
expert is equally likely), the layer's load-balancing loss (E·Σ f·P, as in
training; k at an even load), the same loss pooled over all MoE layers (the
training objective's aux term), and with top-2 routing the pairs of experts
chosen together most often.`, stderr)
	mf := addModelFlags(fs, withQuantize)
	file := fs.String("file", "", "text file to route")
	idList := fs.String("ids", "", "token ids to route instead of a file, comma-separated")
	ctx := fs.Int("context", 256, "window length in tokens")
	maxTokens := fs.Int("max-tokens", 16384, "use only the first N tokens of the file (0: all)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*file == "") == (*idList == "") {
		return fmt.Errorf("%w: give --file or --ids", errUsage)
	}
	if *ctx < 1 {
		return fmt.Errorf("%w: --context must be at least 1", errUsage)
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	var ids []int
	if *idList != "" {
		if ids, err = parseIDs(*idList); err != nil {
			return err
		}
	} else {
		tok, err := m.Tokenizer()
		if err != nil {
			return err
		}
		if ids, err = encodeFile(tok, *file); err != nil {
			return err
		}
	}
	st := model.NewRoutingStats(m.Model)
	if len(st.Count) == 0 {
		return fmt.Errorf("the model has no MoE layer (num_experts %d): nothing to route", m.Config.NumExperts)
	}
	for _, id := range ids {
		if id < 0 || id >= m.Config.VocabSize {
			return fmt.Errorf("token id %d is outside the vocabulary [0, %d)", id, m.Config.VocabSize)
		}
	}
	if *maxTokens > 0 && len(ids) > *maxTokens {
		ids = ids[:*maxTokens]
	}
	if len(ids) == 0 {
		return fmt.Errorf("no tokens to route")
	}
	ws := m.NewWorkspace()
	ws.CaptureRouter = true
	for w := 0; w < len(ids); w += *ctx {
		win := ids[w:min(w+*ctx, len(ids))]
		if err := ws.Forward([]model.SeqInput{{Tokens: win}}); err != nil {
			return err
		}
		st.Add(ws.Router, len(win))
		fmt.Fprintf(stderr, "\r%d/%d tokens", w+len(win), len(ids))
	}
	fmt.Fprintln(stderr)

	rep := routingReport{Tokens: st.Rows, Experts: st.Experts, TopK: st.TopK, Aux: st.Aux()}
	var moeLayers []int
	for i := range m.Config.NumHiddenLayers {
		if m.Config.FFN(i) == model.MoE {
			moeLayers = append(moeLayers, i)
		}
	}
	for j := range st.Count {
		l := routingLayer{Layer: moeLayers[j], Load: make([]float64, st.Experts), Aux: st.LayerAux(j),
			Entropy: st.EntropySum[j] / float64(st.Rows)}
		total := float64(st.TopK * st.Rows)
		mean := 1 / float64(st.Experts)
		lo, hi := math.Inf(1), 0.0
		var ss float64
		for e, c := range st.Count[j] {
			l.Load[e] = c / total
			ss += (l.Load[e] - mean) * (l.Load[e] - mean)
			lo, hi = min(lo, l.Load[e]), max(hi, l.Load[e])
		}
		l.CV = math.Sqrt(ss/float64(st.Experts)) / mean
		l.MaxOverMin = hi / lo
		type pc struct {
			p [2]int
			n int
		}
		var ps []pc
		for p, n := range st.Pairs[j] {
			ps = append(ps, pc{p, n})
		}
		sort.Slice(ps, func(a, b int) bool {
			if ps[a].n != ps[b].n {
				return ps[a].n > ps[b].n
			}
			return ps[a].p[0] < ps[b].p[0] || ps[a].p[0] == ps[b].p[0] && ps[a].p[1] < ps[b].p[1]
		})
		for _, p := range ps[:min(3, len(ps))] {
			l.TopPairs = append(l.TopPairs, fmt.Sprintf("%d+%d: %.1f%%", p.p[0], p.p[1], 100*float64(p.n)/float64(st.Rows)))
		}
		rep.Layers = append(rep.Layers, l)
	}
	if *asJSON {
		// JSON has no infinity: an expert never chosen makes the ratio 0.
		for i := range rep.Layers {
			if math.IsInf(rep.Layers[i].MaxOverMin, 0) {
				rep.Layers[i].MaxOverMin = 0
			}
		}
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "%d tokens, %d experts, top-%d; pooled load-balancing loss %.4f (%d at an even load)\n\n",
		rep.Tokens, rep.Experts, rep.TopK, rep.Aux, rep.TopK)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "layer\tload per expert (%)\tCV\tmax/min\tentropy (nats)\taux\tfrequent pairs\t")
	for _, l := range rep.Layers {
		loads := make([]string, len(l.Load))
		for e, v := range l.Load {
			loads[e] = fmt.Sprintf("%.1f", 100*v)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.3f\t%.2f\t%.3f / %.3f\t%.4f\t%s\t\n", l.Layer, strings.Join(loads, " "), l.CV, l.MaxOverMin,
			l.Entropy, math.Log(float64(rep.Experts)), l.Aux, strings.Join(l.TopPairs, ", "))
	}
	return tw.Flush()
}
