package main

import (
	"bytes"
	"testing"
)

// TestCountProgressLog: written to a log (not a terminal), progress is plain
// lines, the first and the last step at least, and no carriage returns.
func TestCountProgressLog(t *testing.T) {
	var b bytes.Buffer
	p := newCountProgress(&b, "window")
	for i := 1; i <= 3; i++ {
		p.update(i, 3)
	}
	p.end()
	if got, want := b.String(), "window 1/3\nwindow 3/3\n"; got != want {
		t.Errorf("progress in a log = %q, want %q", got, want)
	}
}
