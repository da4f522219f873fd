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
