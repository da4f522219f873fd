// Command longctxplot summarises a run of scripts/longctx-sweep.sh: a
// Markdown table of prefill and decode speed against context, for llama.cpp
// and this engine (medians over the pairs, and the median of the per-pair
// ratios), and a PNG of the same curves.
//
//	go run ./scripts/longctxplot -in /tmp/longctx-sweep -png docs/longctx.png
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/jamba-go/jamba/internal/atomicfile"
)

// run is one measurement: an engine ("llama.cpp", "jamba bf16 KV", ...), a
// context, the pair it belongs to, and what it measured (0: not measured).
type run struct {
	engine  string
	context int
	tag     string
	prefill float64 // tokens/s of a prefill of context tokens
	depthPP float64 // llama.cpp: the same, timed in its depth run (0: not timed)
	decode  float64 // tokens/s of decode after context tokens
	rssKiB  int64   // peak RSS from /usr/bin/time (0: unknown)
	jambaRS int64   // the model's peak RSS as jamba bench reports it (bytes)
	predict int64   // jamba bench's predicted weights + KV + state (bytes)
}

var fileRE = regexp.MustCompile(`^(llama-pp|llama-tg|jamba-(\w+))-(\d+)-(\w+)\.json$`)

func main() {
	in := flag.String("in", "", "the sweep's output folder (required)")
	png := flag.String("png", "", "write the curves to this PNG file")
	note := flag.String("note", "", "a line under the figure's titles (the machine, its load)")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "usage: longctxplot -in DIR [-png FILE]")
		os.Exit(2)
	}
	runs, err := load(*in)
	if err == nil && len(runs) == 0 {
		err = fmt.Errorf("%s: no results of longctx-sweep.sh", *in)
	}
	if err == nil {
		err = table(os.Stdout, runs)
	}
	if err == nil && *png != "" {
		err = draw2(*png, runs, *note)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "longctxplot:", err)
		os.Exit(1)
	}
}

func load(dir string) ([]*run, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byKey := map[string]*run{}
	var runs []*run
	get := func(engine string, n int, tag string) *run {
		k := engine + "/" + strconv.Itoa(n) + "/" + tag
		if r := byKey[k]; r != nil {
			return r
		}
		r := &run{engine: engine, context: n, tag: tag}
		byKey[k] = r
		runs = append(runs, r)
		return r
	}
	for _, e := range ents {
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		n, _ := strconv.Atoi(m[3])
		tag := m[4]
		line, err := lastLine(path)
		if err != nil {
			return nil, err
		}
		if line == "" {
			continue
		}
		rss := timeRSS(strings.TrimSuffix(path, ".json") + ".time")
		switch {
		case m[1] == "llama-pp" || m[1] == "llama-tg":
			var v struct {
				NPrompt int     `json:"n_prompt"`
				NGen    int     `json:"n_gen"`
				NDepth  int     `json:"n_depth"`
				AvgTS   float64 `json:"avg_ts"`
			}
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			r := get("llama.cpp", n, tag)
			if m[1] == "llama-pp" {
				r.prefill = v.AvgTS
			} else {
				r.decode = v.AvgTS
				r.depthPP = depthPrefill(strings.TrimSuffix(path, ".json")+".log", n)
			}
			r.rssKiB = max(r.rssKiB, rss)
		default:
			var v struct {
				Prefill   float64 `json:"prefill_tokens_per_s"`
				Decode    float64 `json:"decode_tokens_per_s"`
				Context   int     `json:"context"`
				PeakRSS   int64   `json:"peak_rss_bytes"`
				Predicted int64   `json:"predicted_bytes"`
			}
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			r := get("jamba, "+m[2]+" KV", n, tag)
			r.prefill, r.decode, r.rssKiB, r.jambaRS, r.predict = v.Prefill, v.Decode, rss, v.PeakRSS, v.Predicted
		}
	}
	// Where llama-bench's -p N run was left out, its prefill is the one
	// timed in the -d N run.
	for _, r := range runs {
		if r.engine == "llama.cpp" && r.prefill == 0 {
			r.prefill = r.depthPP
		}
	}
	return runs, nil
}

func lastLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// timeRSS reads "Maximum resident set size (kbytes)" from /usr/bin/time -v.
func timeRSS(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && strings.HasPrefix(k, "Maximum resident set size") {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// depthPrefill reads a log of "seconds line" pairs (llama-bench --progress's
// stderr with a time stamp per line) and returns n over the time from
// the "depth run" line to the "generation run" line: the prefill of the
// depth's n tokens. 0 if the file or the lines are missing.
func depthPrefill(path string, n int) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var t0, t1 float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ts, line, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		t, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, "depth run") && t0 == 0:
			t0 = t
		case strings.Contains(line, "generation run") && t0 > 0 && t1 == 0:
			t1 = t
		}
	}
	if t1 <= t0 {
		return 0
	}
	return float64(n) / (t1 - t0)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// series collects, per engine and context, the values of one measure.
func series(runs []*run, engine string, val func(*run) float64) map[int][]float64 {
	out := map[int][]float64{}
	for _, r := range runs {
		if r.engine == engine {
			if v := val(r); v > 0 {
				out[r.context] = append(out[r.context], v)
			}
		}
	}
	return out
}

func engines(runs []*run) (ours []string) {
	seen := map[string]bool{}
	for _, r := range runs {
		if r.engine != "llama.cpp" && !seen[r.engine] {
			seen[r.engine] = true
			ours = append(ours, r.engine)
		}
	}
	sort.Strings(ours)
	return ours
}

func contexts(runs []*run) []int {
	seen := map[int]bool{}
	var cs []int
	for _, r := range runs {
		if !seen[r.context] {
			seen[r.context] = true
			cs = append(cs, r.context)
		}
	}
	sort.Ints(cs)
	return cs
}

// pairRatios returns ours ÷ llama.cpp for each pair (tag) where both
// measured val at context n.
func pairRatios(runs []*run, engine string, n int, val func(*run) float64) []float64 {
	ll := map[string]float64{}
	for _, r := range runs {
		if r.engine == "llama.cpp" && r.context == n && val(r) > 0 {
			ll[r.tag] = val(r)
		}
	}
	var out []float64
	for _, r := range runs {
		if r.engine == engine && r.context == n && val(r) > 0 && ll[r.tag] > 0 {
			out = append(out, val(r)/ll[r.tag])
		}
	}
	return out
}

func prefillOf(r *run) float64 { return r.prefill }
func decodeOf(r *run) float64  { return r.decode }

func kiloTokens(n int) string {
	if n%1024 == 0 {
		return strconv.Itoa(n/1024) + "K"
	}
	return strconv.Itoa(n)
}

func spread(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 1 {
		return fmt.Sprintf("%.1f", s[0])
	}
	return fmt.Sprintf("%.1f (%.1f–%.1f)", median(s), s[0], s[len(s)-1])
}

func ratio(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 1 {
		return fmt.Sprintf("**%.2fx**", s[0])
	}
	return fmt.Sprintf("**%.2fx** (%.2f–%.2f)", median(s), s[0], s[len(s)-1])
}

func table(w io.Writer, runs []*run) error {
	ours := engines(runs)
	cs := contexts(runs)
	for _, what := range []struct {
		name string
		val  func(*run) float64
	}{{"prefill of N tokens, tok/s", prefillOf}, {"decode after N tokens, tok/s", decodeOf}} {
		fmt.Fprintf(w, "%s: median (min–max) over the runs; ratio: median of the per-pair ratios (range)\n\n", what.name)
		hdr := "| context | runs | llama.cpp |"
		sep := "|---|---|---|"
		for _, e := range ours {
			hdr += " " + e + " | ÷ llama.cpp |"
			sep += "---|---|"
		}
		fmt.Fprintln(w, hdr)
		fmt.Fprintln(w, sep)
		ll := series(runs, "llama.cpp", what.val)
		for _, n := range cs {
			row := fmt.Sprintf("| %s | %d | %s |", kiloTokens(n), len(ll[n]), spread(ll[n]))
			for _, e := range ours {
				s := series(runs, e, what.val)
				row += fmt.Sprintf(" %s | %s |", spread(s[n]), ratio(pairRatios(runs, e, n, what.val)))
			}
			fmt.Fprintln(w, row)
		}
		fmt.Fprintln(w)
	}
	// Flatness: decode at the longest context over decode at the shortest.
	if len(cs) > 1 {
		for _, e := range append([]string{"llama.cpp"}, ours...) {
			s := series(runs, e, decodeOf)
			lo := median(s[cs[0]])
			for _, n := range cs[1:] {
				if len(s[n]) > 0 && lo > 0 {
					fmt.Fprintf(w, "%s decode(%s) ÷ decode(%s): %.2f\n", e, kiloTokens(n), kiloTokens(cs[0]), median(s[n])/lo)
				}
			}
		}
		fmt.Fprintln(w)
	}
	var agree []string
	for _, r := range runs {
		if r.engine == "llama.cpp" && r.depthPP > 0 && r.prefill != r.depthPP {
			agree = append(agree, fmt.Sprintf("%s %s: %.1f vs %.1f (%.3f)", kiloTokens(r.context), r.tag, r.depthPP, r.prefill, r.depthPP/r.prefill))
		}
	}
	if len(agree) > 0 {
		fmt.Fprintf(w, "llama.cpp prefill timed in the depth run vs its -p N run, tok/s: %s\n\n", strings.Join(agree, "; "))
	}
	fmt.Fprintln(w, "| context | engine | peak RSS (time -v) | model's peak RSS (bench) | predicted weights + KV + state | bench ÷ predicted |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, n := range cs {
		for _, e := range append([]string{"llama.cpp"}, ours...) {
			var rss, jr, pr int64
			for _, r := range runs {
				if r.engine == e && r.context == n {
					rss, jr, pr = max(rss, r.rssKiB), max(jr, r.jambaRS), max(pr, r.predict)
				}
			}
			if rss == 0 && jr == 0 {
				continue
			}
			line := fmt.Sprintf("| %s | %s | %.2f GiB |", kiloTokens(n), e, float64(rss)/(1<<20))
			if pr > 0 {
				line += fmt.Sprintf(" %.2f GiB | %.2f GiB | %.3f |", float64(jr)/(1<<30), float64(pr)/(1<<30), float64(jr)/float64(pr))
			} else {
				line += " | | |"
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

var colours = []color.Color{
	color.RGBA{127, 127, 127, 255}, // llama.cpp
	color.RGBA{31, 119, 180, 255},
	color.RGBA{214, 39, 40, 255},
	color.RGBA{44, 160, 44, 255},
}

// draw2 draws prefill (left) and decode (right) against context, log2
// axis: each run a dot, the medians joined by a line.
func draw2(path string, runs []*run, note string) error {
	names := append([]string{"llama.cpp"}, engines(runs)...)
	var plots [1][2]*plot.Plot
	for i, what := range []struct {
		title string
		val   func(*run) float64
	}{{"Prefill of N tokens", prefillOf}, {"Decode at batch 1 after N tokens", decodeOf}} {
		p := plot.New()
		p.Title.Text = what.title
		if note != "" {
			p.Title.Text += "\n" + note
		}
		p.X.Label.Text = "context N (tokens)"
		p.Y.Label.Text = "tokens/s"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = contextTicks{}
		p.Y.Min = 0
		// The axis spans the sweep's contexts, with or without data in
		// this panel (a log scale needs positive bounds).
		cs := contexts(runs)
		p.X.Min, p.X.Max = float64(cs[0])/1.3, float64(cs[len(cs)-1])*1.3
		p.Add(plotter.NewGrid())
		for ei, name := range names {
			s := series(runs, name, what.val)
			var ns []int
			for n := range s {
				ns = append(ns, n)
			}
			sort.Ints(ns)
			var med, all plotter.XYs
			for _, n := range ns {
				med = append(med, plotter.XY{X: float64(n), Y: median(s[n])})
				for _, v := range s[n] {
					all = append(all, plotter.XY{X: float64(n), Y: v})
				}
			}
			if len(med) == 0 {
				continue
			}
			c := colours[ei%len(colours)]
			l, pts, err := plotter.NewLinePoints(med)
			if err != nil {
				return err
			}
			l.Color, pts.Color = c, c
			l.Width = vg.Points(1.5)
			pts.Shape = draw.CircleGlyph{}
			pts.Radius = vg.Points(2.5)
			if name == "llama.cpp" {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			}
			sc, err := plotter.NewScatter(all)
			if err != nil {
				return err
			}
			sc.Color = c
			sc.Shape = draw.CrossGlyph{}
			sc.Radius = vg.Points(2)
			p.Add(l, pts, sc)
			p.Legend.Add(name, l, pts)
		}
		// Room above the curves for the legend.
		var top float64
		for _, r := range runs {
			top = max(top, what.val(r))
		}
		p.Y.Max = top * 1.3
		p.Legend.Top = true
		p.Legend.Left = true
		plots[0][i] = p
	}
	const w, h = 12 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	ps := [][]*plot.Plot{plots[0][:]}
	canvases := plot.Align(ps, t, dc)
	for c, p := range ps[0] {
		p.Draw(canvases[0][c])
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// contextTicks marks the powers of two of the context axis as 1K, 2K, ...
type contextTicks struct{}

func (contextTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for n := 1.0; n <= hi*1.001; n *= 2 {
		if n >= lo*0.999 {
			ts = append(ts, plot.Tick{Value: n, Label: kiloTokens(int(n))})
		}
	}
	return ts
}
