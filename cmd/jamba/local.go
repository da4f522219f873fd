package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/textgen"
)

// jamba run and jamba chat generate through the engine, as the server
// does (and as ollama run drives the runner that ollama serve drives): one
// slot, so that prompts go through the same scheduler, prefix reuse,
// sampling and stop strings as served requests.

// reply is the outcome of one generation request.
type reply struct {
	ids    []int              // the generated tokens shown (none after a stop string)
	finish model.FinishReason // why it ended; FinishStop for a stop string too
	cached int                // prompt tokens continued from the engine's earlier state
}

// streamReply submits req to eng and writes its text to w as it arrives,
// flushing after every token: ts turns the ids into text, or, when nil,
// they are written as numbers. A stop string of ts ends the request. first,
// when not nil, is called at the first token.
func streamReply(ctx context.Context, eng *engine.Engine, req engine.Request, ts *textgen.Stream, w *bufio.Writer, first func()) (reply, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := eng.Submit(ctx, req)
	if err != nil {
		return reply{}, err
	}
	var r reply
	stopped := false
	for ev := range st.Events() {
		if ev.HasToken() && !stopped {
			if first != nil && len(r.ids) == 0 {
				first()
			}
			r.ids = append(r.ids, ev.Token)
			if ts == nil {
				fmt.Fprintf(w, "%d ", ev.Token)
			} else {
				text, s := ts.Add(ev.Token)
				w.WriteString(text)
				if s {
					stopped = true
					cancel() // the engine ends the request at its next step
				}
			}
			if ferr := w.Flush(); ferr != nil && err == nil {
				err = ferr
				cancel()
			}
		}
		switch {
		case ev.Err == nil:
			r.finish = ev.Finish
		case stopped && errors.Is(ev.Err, context.Canceled):
			r.finish = model.FinishStop
		case err == nil:
			err = ev.Err
		}
	}
	r.cached = st.CachedTokens()
	if stopped {
		r.finish = model.FinishStop
	}
	if err == nil && !stopped && ts != nil {
		text, _ := ts.Finish()
		w.WriteString(text)
		err = w.Flush()
	}
	return r, err
}
