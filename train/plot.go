package train

import (
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/jamba-go/jamba/internal/atomicfile"
)

// WriteLossPlot draws the training loss (per step, and its moving average
// over 20 steps) and the validation loss against the step into a PNG file.
func WriteLossPlot(path string, ms []Metric) error {
	p := plot.New()
	p.Title.Text = "Training loss"
	p.X.Label.Text = "step"
	p.Y.Label.Text = "cross-entropy (nats/token)"
	p.Add(plotter.NewGrid())
	var train, smooth, val plotter.XYs
	const window = 20
	var sum float64
	for i, m := range ms {
		train = append(train, plotter.XY{X: float64(m.Step), Y: m.Loss})
		sum += m.Loss
		if i >= window {
			sum -= ms[i-window].Loss
		}
		smooth = append(smooth, plotter.XY{X: float64(m.Step), Y: sum / float64(min(i+1, window))})
		if !math.IsNaN(m.ValLoss) {
			val = append(val, plotter.XY{X: float64(m.Step), Y: m.ValLoss})
		}
	}
	if len(train) > 0 {
		l, err := plotter.NewLine(train)
		if err != nil {
			return err
		}
		l.Color = color.Gray{Y: 150}
		l.Width = vg.Points(0.5)
		l.Dashes = []vg.Length{vg.Points(1), vg.Points(1)}
		p.Add(l)
		p.Legend.Add("train", l)
		s, err := plotter.NewLine(smooth)
		if err != nil {
			return err
		}
		s.Width = vg.Points(1.5)
		p.Add(s)
		p.Legend.Add("train (mean of 20 steps)", s)
	}
	if len(val) > 0 {
		l, pts, err := plotter.NewLinePoints(val)
		if err != nil {
			return err
		}
		red := color.RGBA{R: 200, G: 30, B: 30, A: 255}
		l.Color, pts.Color = red, red
		l.Width = vg.Points(1.5)
		p.Add(l, pts)
		p.Legend.Add("validation", l, pts)
	}
	p.Legend.Top = true
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}
