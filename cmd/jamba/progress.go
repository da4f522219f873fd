package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// countProgress reports "label done/total" on w: on a terminal one line
// redrawn in place, in a log (w not a terminal) a plain line every few
// seconds and at the end, so that logs hold no carriage returns.
type countProgress struct {
	w     io.Writer
	label string
	tty   bool
	drawn bool
	last  time.Time
}

func newCountProgress(w io.Writer, label string) *countProgress {
	f, ok := w.(*os.File)
	return &countProgress{w: w, label: label, tty: ok && term.IsTerminal(int(f.Fd()))}
}

// update is the callback for long work that counts its steps.
func (p *countProgress) update(done, total int) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s %d/%d", p.label, done, total)
		p.drawn = true
		return
	}
	if now := time.Now(); done == total || now.Sub(p.last) >= 5*time.Second {
		p.last = now
		fmt.Fprintf(p.w, "%s %d/%d\n", p.label, done, total)
	}
}

// end finishes the terminal's line.
func (p *countProgress) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// rateProgress reports "label done/total tokens, R tok/s, T left" for work
// whose rate is the news (a long prefill), the way countProgress does: one
// line redrawn on a terminal, a plain line every few seconds in a log.
type rateProgress struct {
	countProgress
	total int
	start time.Time
}

func newRateProgress(w io.Writer, label string, total int) *rateProgress {
	return &rateProgress{countProgress: *newCountProgress(w, label), total: total, start: time.Now()}
}

func (p *rateProgress) update(done int) {
	now := time.Now()
	if !p.tty && done != p.total && now.Sub(p.last) < 5*time.Second {
		return
	}
	if p.tty && done != p.total && now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	rate := float64(done) / el
	left := time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second)
	line := fmt.Sprintf("%s %d/%d tokens, %.1f tok/s, %s left", p.label, done, p.total, rate, left)
	if done == p.total {
		line = fmt.Sprintf("%s %d/%d tokens, %.1f tok/s, %s", p.label, done, p.total, rate, time.Duration(el*float64(time.Second)).Round(100*time.Millisecond))
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, line)
}
