package hub

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports a pull: on a terminal one bar for all bytes whose text
// names the files in flight with their percentage, and a line per finished
// file; elsewhere (a log, a pipe) a plain line every few seconds instead of
// carriage returns. A nil *progress reports nothing.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	files   map[string]*fileProgress
	total   int64
	bytes   int64
	started time.Time
	bar     *progressbar.ProgressBar
	lastDsc time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
}

type fileProgress struct {
	done, size int64
	finished   bool
}

func newProgress(w io.Writer, label string, every time.Duration) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, label: label, files: map[string]*fileProgress{}, started: time.Now(), stop: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetWidth(25),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetDescription(label),
		)
		return p
	}
	if every <= 0 {
		every = 5 * time.Second
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.mu.Lock()
				if p.total > 0 && p.bytes < p.total {
					fmt.Fprintln(p.w, p.line())
				}
				p.mu.Unlock()
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

// line is the plain progress line: all bytes, rate, and each file in
// flight.
func (p *progress) line() string {
	el := time.Since(p.started).Seconds()
	rate := ""
	if el > 0 {
		rate = ", " + humanBytes(int64(float64(p.bytes)/el)) + "/s"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s of %s (%.0f%%)%s", p.label, humanBytes(p.bytes), humanBytes(p.total), 100*float64(p.bytes)/float64(max(p.total, 1)), rate)
	sep := "; "
	for _, name := range p.active() {
		f := p.files[name]
		fmt.Fprintf(&b, "%s%s %.0f%%", sep, name, 100*float64(f.done)/float64(max(f.size, 1)))
		sep = ", "
	}
	return b.String()
}

func (p *progress) active() []string {
	var names []string
	for name, f := range p.files {
		if !f.finished && f.done > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// register announces a file to download and its size.
func (p *progress) register(file string, size int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.files[file]; ok {
		return
	}
	p.files[file] = &fileProgress{size: size}
	p.total += size
	if p.bar != nil {
		p.bar.ChangeMax64(p.total)
	}
}

// set records that file has done bytes (a resumed download starts there).
func (p *progress) set(file string, done, size int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	f, ok := p.files[file]
	if !ok {
		p.mu.Unlock()
		p.register(file, size)
		p.mu.Lock()
		f = p.files[file]
	}
	p.bytes += done - f.done
	f.done = done
	p.render()
	p.mu.Unlock()
}

func (p *progress) add(file string, n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if f, ok := p.files[file]; ok {
		f.done += n
		p.bytes += n
		p.render()
	}
	p.mu.Unlock()
}

// render updates the bar (under p.mu).
func (p *progress) render() {
	if p.bar == nil {
		return
	}
	if time.Since(p.lastDsc) > 300*time.Millisecond {
		p.lastDsc = time.Now()
		d := p.label
		for _, name := range p.active() {
			f := p.files[name]
			d += fmt.Sprintf("  %s %.0f%%", shortName(name), 100*float64(f.done)/float64(max(f.size, 1)))
		}
		p.bar.Describe(d)
	}
	p.bar.Set64(p.bytes)
}

func shortName(s string) string {
	if len(s) > 32 {
		return "…" + s[len(s)-31:]
	}
	return s
}

// done reports a file complete and in the cache.
func (p *progress) done(file string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.files[file]
	if !ok || f.finished {
		return
	}
	f.finished = true
	p.printLine(fmt.Sprintf("%s: %s (%s) done", p.label, file, humanBytes(f.size)))
}

// note prints a message between progress updates.
func (p *progress) note(msg string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printLine(p.label + ": " + msg)
}

func (p *progress) printLine(s string) {
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintln(p.w, s)
}

// finish stops the reporting and prints a summary when anything was
// downloaded.
func (p *progress) finish(err error) {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
	if err == nil && p.total > 0 {
		fmt.Fprintf(p.w, "%s: %d files, %s in %s\n", p.label, len(p.files), humanBytes(p.total), time.Since(p.started).Round(100*time.Millisecond))
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PiB", f/unit)
}
