package study

import (
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// PlotState draws four panels, one line per Mamba layer: the distribution
// (sorted values) of the per-channel mean Δ, the decay per state
// dimension, the state norm over positions, and the distribution of the
// memory lengths.
func PlotState(path string, states []LayerState) error {
	panel := func(title, x, y string, logY bool) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = x
		p.Y.Label.Text = y
		if logY {
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		p.Add(plotter.NewGrid())
		return p
	}
	dt := panel("mean dt per channel (sorted)", "channel quantile", "dt", true)
	decay := panel("decay per token exp(dt*A), mean", "state dimension", "decay", false)
	norm := panel("state norm over positions", "position", "||h||", false)
	mem := panel("effective memory length (1%)", "component quantile", "tokens", true)
	sortedQ := func(xs []float64) plotter.XYs {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		pts := make(plotter.XYs, len(s))
		for i, v := range s {
			pts[i] = plotter.XY{X: float64(i) / float64(max(len(s)-1, 1)), Y: math.Max(v, 1e-12)}
		}
		return pts
	}
	for i, s := range states {
		c, d := style(i)
		name := fmt.Sprintf("layer %d", s.Layer)
		add := func(p *plot.Plot, pts plotter.XYs, legend bool) error {
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color, l.Dashes = c, d
			l.Width = vg.Points(1.2)
			p.Add(l)
			if legend {
				p.Legend.Add(name, l)
			}
			return nil
		}
		dp := make(plotter.XYs, len(s.Decay))
		for n, v := range s.Decay {
			dp[n] = plotter.XY{X: float64(n), Y: v}
		}
		np := make(plotter.XYs, len(s.StateNorm))
		for t, v := range s.StateNorm {
			np[t] = plotter.XY{X: float64(t), Y: v}
		}
		for j, e := range []error{add(dt, sortedQ(s.DtMean), true), add(decay, dp, false), add(norm, np, false), add(mem, sortedQ(s.Memory), false)} {
			if e != nil {
				return fmt.Errorf("study: state plot panel %d: %w", j, e)
			}
		}
	}
	dt.Legend.Top, dt.Legend.Left = false, false
	plots := [][]*plot.Plot{{dt, decay}, {norm, mem}}
	img := vgimg.New(12*vg.Inch, 9*vg.Inch)
	t := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, draw.New(img))
	for r := range plots {
		for c := range plots[r] {
			plots[r][c].Draw(canvases[r][c])
		}
	}
	return writePNG(path, img)
}

// PlotImportance draws each layer's KL divergence when its mixer is
// zeroed, as bars labelled with the mixer kind.
func PlotImportance(path string, imps []LayerImportance) error {
	p := plot.New()
	p.Title.Text = "Layer importance: KL(intact || mixer zeroed), mean over positions"
	p.Y.Label.Text = "KL (nats)"
	vals := make(plotter.Values, len(imps))
	names := make([]string, len(imps))
	for i, im := range imps {
		vals[i] = im.KL
		names[i] = fmt.Sprintf("%d %s", im.Layer, im.Mixer)
	}
	b, err := plotter.NewBarChart(vals, vg.Points(18))
	if err != nil {
		return err
	}
	b.Color = palette[0]
	p.Add(b)
	p.NominalX(names...)
	return p.Save(vg.Length(max(6, len(imps)))*vg.Inch*0.8, 4*vg.Inch, path)
}
