package study

import (
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// palette gives each variant of a figure its own colour and dash.
var palette = []color.Color{
	color.RGBA{31, 119, 180, 255}, color.RGBA{214, 39, 40, 255}, color.RGBA{44, 160, 44, 255},
	color.RGBA{255, 127, 14, 255}, color.RGBA{148, 103, 189, 255}, color.RGBA{140, 86, 75, 255},
	color.RGBA{227, 119, 194, 255}, color.RGBA{127, 127, 127, 255}, color.RGBA{188, 189, 34, 255},
	color.RGBA{23, 190, 207, 255}, color.RGBA{0, 0, 0, 255},
}

func style(i int) (color.Color, []vg.Length) {
	c := palette[i%len(palette)]
	if i >= len(palette) {
		return c, []vg.Length{vg.Points(3), vg.Points(2)}
	}
	return c, nil
}

// variantOrder lists the variants of rs in first-seen order.
func variantOrder(rs []*RunResult) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.Variant.Name] {
			seen[r.Variant.Name] = true
			names = append(names, r.Variant.Name)
		}
	}
	return names
}

// PlotLossCurves draws each variant's validation loss against the tokens
// seen, the mean over its seeds at each evaluation.
func PlotLossCurves(path string, rs []*RunResult) error {
	p := plot.New()
	p.Title.Text = "Held-out loss (mean over seeds)"
	p.X.Label.Text = "training tokens (millions)"
	p.Y.Label.Text = "cross-entropy (nats/token)"
	p.Add(plotter.NewGrid())
	for i, name := range variantOrder(rs) {
		sum := map[int64]float64{}
		cnt := map[int64]int{}
		for _, r := range rs {
			if r.Variant.Name != name {
				continue
			}
			for _, m := range r.Metrics {
				if !math.IsNaN(m.ValLoss) {
					sum[m.Tokens] += m.ValLoss
					cnt[m.Tokens]++
				}
			}
		}
		var xs []int64
		for x := range sum {
			xs = append(xs, x)
		}
		sort.Slice(xs, func(a, b int) bool { return xs[a] < xs[b] })
		var pts plotter.XYs
		for _, x := range xs {
			pts = append(pts, plotter.XY{X: float64(x) / 1e6, Y: sum[x] / float64(cnt[x])})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color, l.Dashes = style(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
	}
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// PlotTaskSweeps draws, one panel per task side by side, each variant's
// accuracy against the task's size: the mean over seeds, with bars from
// the lowest to the highest seed.
func PlotTaskSweeps(path string, rs []*RunResult) error {
	var taskNames []string
	sizeName := map[string]string{}
	for _, r := range rs {
		for _, t := range r.Tasks {
			if _, ok := sizeName[t.Task]; !ok {
				sizeName[t.Task] = t.SizeName
				taskNames = append(taskNames, t.Task)
			}
		}
	}
	if len(taskNames) == 0 {
		return nil
	}
	cols := min(2, len(taskNames))
	rows := (len(taskNames) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for r := range plots {
		plots[r] = make([]*plot.Plot, cols)
	}
	variants := variantOrder(rs)
	for ti, task := range taskNames {
		p := plot.New()
		p.Title.Text = task
		p.X.Label.Text = sizeName[task]
		p.Y.Label.Text = "accuracy"
		p.Y.Min, p.Y.Max = 0, 1.02
		p.Add(plotter.NewGrid())
		for vi, name := range variants {
			acc := map[int][]float64{}
			for _, r := range rs {
				if r.Variant.Name != name {
					continue
				}
				for _, t := range r.Tasks {
					if t.Task == task {
						acc[t.Size] = append(acc[t.Size], t.Accuracy)
					}
				}
			}
			var sizes []int
			for s := range acc {
				sizes = append(sizes, s)
			}
			sort.Ints(sizes)
			var pts plotter.XYs
			var errs plotter.YErrors
			for _, s := range sizes {
				mean, lo, hi := spread(acc[s])
				pts = append(pts, plotter.XY{X: float64(s), Y: mean})
				errs = append(errs, struct{ Low, High float64 }{mean - lo, hi - mean})
			}
			if len(pts) == 0 {
				continue
			}
			l, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			c, d := style(vi)
			l.Color, l.Dashes, sc.Color = c, d, c
			l.Width = vg.Points(1.2)
			sc.Radius = vg.Points(1.8)
			p.Add(l, sc)
			eb := &plotter.YErrorBars{XYs: pts, YErrors: errs, LineStyle: l.LineStyle, CapWidth: vg.Points(3)}
			eb.LineStyle.Dashes = nil
			eb.LineStyle.Width = vg.Points(0.7)
			p.Add(eb)
			if ti == 0 {
				p.Legend.Add(name, l, sc)
			}
		}
		p.Legend.Top = false
		p.Legend.Left = true
		plots[ti/cols][ti%cols] = p
	}
	const w, h = 12 * vg.Inch, 9 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, dc)
	for r := range plots {
		for c := range plots[r] {
			if plots[r][c] != nil {
				plots[r][c].Draw(canvases[r][c])
			}
		}
	}
	return writePNG(path, img)
}

// spread returns the mean, minimum and maximum of xs.
func spread(xs []float64) (mean, lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		mean += x
		lo, hi = min(lo, x), max(hi, x)
	}
	return mean / float64(len(xs)), lo, hi
}
