package study

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/jamba-go/jamba/internal/atomicfile"
)

// headGrid is one head's map as a plotter.GridXYZ: column = key, row =
// query counted from the bottom, so that query 0 is drawn at the top.
type headGrid struct {
	a *AttentionMap
	h int
}

func (g headGrid) Dims() (c, r int)   { return g.a.T, g.a.T }
func (g headGrid) Z(c, r int) float64 { return float64(g.a.At(g.h, g.a.T-1-r, c)) }
func (g headGrid) X(c int) float64    { return float64(c) }
func (g headGrid) Y(r int) float64    { return float64(r) }

// flippedTicks labels the query axis from the top.
type flippedTicks struct{ T int }

func (f flippedTicks) Ticks(min, max float64) []plot.Tick {
	flip := float64(f.T - 1)
	var out []plot.Tick
	for _, t := range (plot.DefaultTicks{}).Ticks(flip-max, flip-min) {
		t.Value = flip - t.Value
		out = append(out, t)
	}
	return out
}

// PlotAttention draws the heads of one attention layer side by side as
// heat maps (query down, key across; the colour scale from 0 to the
// layer's largest weight), titled with each head's scores when given.
func PlotAttention(path string, a *AttentionMap, scores []HeadScores) error {
	var mx float32
	for _, v := range a.W {
		mx = max(mx, v)
	}
	pal := moreland.ExtendedBlackBody()
	pal.SetMin(0)
	pal.SetMax(float64(max(mx, 1e-6)))
	cols := min(a.Heads, 4)
	rows := (a.Heads + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for r := range plots {
		plots[r] = make([]*plot.Plot, cols)
	}
	for h := range a.Heads {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("layer %d head %d", a.Layer, h)
		for _, s := range scores {
			if s.Layer == a.Layer && s.Head == h {
				p.Title.Text += fmt.Sprintf("\ninduction %.2f, previous %.2f", s.Induction, s.PrevToken)
			}
		}
		p.X.Label.Text = "key position"
		p.Y.Label.Text = "query position"
		p.Y.Tick.Marker = flippedTicks{a.T}
		hm := plotter.NewHeatMap(headGrid{a, h}, pal.Palette(256))
		hm.Min, hm.Max = 0, float64(max(mx, 1e-6))
		p.Add(hm)
		plots[h/cols][h%cols] = p
	}
	side := vg.Length(3.2) * vg.Inch
	img := vgimg.New(side*vg.Length(cols), side*vg.Length(rows)*1.08)
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 3, PadY: vg.Millimeter * 3,
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

// writePNG writes a canvas as a PNG file, atomically.
func writePNG(path string, img *vgimg.Canvas) error {
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
