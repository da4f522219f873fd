package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/jamba-go/jamba/engine"
)

// generateChoices serves a request for n > 1 choices: one engine group, so
// the prompt is computed once and each choice continues from a copy of
// its state. Choice i samples with seed+i. Usage counts the prompt once
// and the completion tokens of every choice.
func (s *Server) generateChoices(ctx context.Context, w http.ResponseWriter, b *Backend, g *genParams, req engine.Request, constraint func() engine.Constraint, chatAPI bool, start time.Time) {
	if slots := b.Engine.Config().MaxBatch; g.N > slots {
		writeError(w, badRequest("n", "n is %d and this server runs at most %d sequences at once (--max-batch)", g.N, slots))
		return
	}
	req.Adapter = b.adapterFor(g.Model)
	reqs := make([]engine.Request, g.N)
	for i := range reqs {
		reqs[i] = req
		reqs[i].Sampling.Seed = req.Sampling.Seed + uint64(i)
		if constraint != nil {
			reqs[i].Constraint = constraint()
		}
	}
	sts, err := b.Engine.SubmitGroup(ctx, reqs)
	if err != nil {
		if e := submitError(ctx, b, err); e != nil {
			writeError(w, e)
		}
		return
	}
	s.metrics.promptTokens.Add(float64(len(req.Prompt)))
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})

	id := newID("cmpl-")
	if chatAPI {
		id = newID("chatcmpl-")
	}
	created := time.Now().Unix()
	gens := make([]*generation, g.N)
	events := make([]<-chan engine.Event, g.N)
	for i, st := range sts {
		gen := &generation{
			s: s, b: b, g: g, chatAPI: chatAPI, start: start, prompt: len(req.Prompt), st: st, id: id,
			created: created, text: newTextStream(b.Tokenizer, req.Prompt, g.Stop),
		}
		if g.tools != nil {
			gen.text.tools = newToolStream(g.tools)
		}
		gens[i] = gen
		events[i] = st.Events()
		if s.eventFilter != nil {
			events[i] = s.eventFilter(ctx, events[i])
		}
	}
	c := &choices{gens: gens, events: events}
	var runErr error
	if g.Stream {
		runErr = c.stream(ctx, w, rc)
	} else {
		runErr = c.respond(ctx, w)
	}
	tokens := c.tokens()
	s.metrics.outputTokens.Add(float64(tokens))
	endpoint := "/v1/completions"
	if chatAPI {
		endpoint = "/v1/chat/completions"
	}
	s.metrics.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	attrs := []any{"id", id, "endpoint", endpoint, "stream", g.Stream, "n", g.N, "prompt_tokens", len(req.Prompt),
		"completion_tokens", tokens, "duration", time.Since(start).Round(time.Millisecond)}
	if runErr != nil {
		s.log.Info("generation ended early", append(attrs, "error", runErr.Error())...)
	} else {
		s.log.Info("generation", attrs...)
	}
}

// choices are the generations of one request with n > 1.
type choices struct {
	gens   []*generation
	events []<-chan engine.Event
}

func (c *choices) tokens() int {
	n := 0
	for _, g := range c.gens {
		n += g.tokens
	}
	return n
}

func (c *choices) usage() *usage {
	u := c.gens[0].usage()
	u.CompletionTokens = c.tokens()
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// runAll runs every choice at once; done is called when choice i has
// ended without error. It returns the first error.
func (c *choices) runAll(ctx context.Context, emit func(i int, text string, lps []lpEntry) error, ping func() error, done func(i int) error) error {
	errs := make([]error, len(c.gens))
	var wg sync.WaitGroup
	for i, gen := range c.gens {
		wg.Go(func() {
			errs[i] = gen.run(ctx, gen.st.Cancel, c.events[i], func(t string, l []lpEntry) error { return emit(i, t, l) }, ping)
			if errs[i] == nil && done != nil {
				errs[i] = done(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// firstErr is the error of the first choice that failed.
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if es := j.Unwrap(); len(es) > 0 {
			return es[0]
		}
	}
	return err
}

func (c *choices) respond(ctx context.Context, w http.ResponseWriter) error {
	texts := make([][]byte, len(c.gens))
	lps := make([][]lpEntry, len(c.gens))
	err := c.runAll(ctx, func(i int, t string, l []lpEntry) error {
		texts[i] = append(texts[i], t...)
		lps[i] = append(lps[i], l...)
		return nil
	}, nil, nil)
	gen0 := c.gens[0]
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return err // the client is gone
		}
		writeError(w, gen0.failure(firstErr(err)))
		return err
	}
	if gen0.chatAPI {
		out := chatResponse{ID: gen0.id, Object: "chat.completion", Created: gen0.created, Model: gen0.g.Model, Usage: c.usage()}
		for i, gen := range c.gens {
			content := ptr(string(texts[i]))
			if len(gen.calls) > 0 && len(texts[i]) == 0 {
				content = nil
			}
			ch := chatChoice{Index: i, Message: chatMessage{Role: "assistant", Content: content, ToolCalls: gen.calls}, FinishReason: gen.finish}
			if gen.g.Logprobs {
				ch.Logprobs = gen.chatLogprobs(lps[i])
			}
			out.Choices = append(out.Choices, ch)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	out := completionResponse{ID: gen0.id, Object: "text_completion", Created: gen0.created, Model: gen0.g.Model, Usage: c.usage()}
	for i, gen := range c.gens {
		fr := gen.finish
		ch := completionChoice{Index: i, Text: string(texts[i]), FinishReason: &fr}
		if gen.g.Logprobs {
			ch.Logprobs = gen.completionLogprobs(lps[i], 0)
		}
		out.Choices = append(out.Choices, ch)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// stream serves the choices as one stream of server-sent events, each
// chunk carrying one choice's index; a choice's last chunk (with its
// finish_reason) comes as soon as it ends.
func (c *choices) stream(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController) error {
	gen0 := c.gens[0]
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ev := &sseWriter{w: w, rc: rc, timeout: gen0.s.cfg.WriteTimeout}
	defer rc.SetWriteDeadline(time.Time{})
	var mu sync.Mutex
	send := func(v any) error {
		mu.Lock()
		defer mu.Unlock()
		return ev.data(v)
	}
	var nullUsage any
	if gen0.g.IncludeUsage {
		nullUsage = (*usage)(nil)
	}
	sent := make([]int, len(c.gens))
	chunk := func(i int, text *string, lps []lpEntry, finish *string) any {
		gen := c.gens[i]
		if gen.chatAPI {
			ch := chatChunkChoice{Index: i, Delta: chatDelta{Content: text}, FinishReason: finish}
			if gen.g.Logprobs && len(lps) > 0 {
				ch.Logprobs = gen.chatLogprobs(lps)
			}
			return chatChunk{ID: gen.id, Object: "chat.completion.chunk", Created: gen.created, Model: gen.g.Model,
				Choices: []chatChunkChoice{ch}, Usage: nullUsage}
		}
		ch := completionChoice{Index: i, FinishReason: finish}
		if text != nil {
			ch.Text = *text
		}
		if gen.g.Logprobs && len(lps) > 0 {
			ch.Logprobs = gen.completionLogprobs(lps, sent[i])
		}
		return completionChunk{ID: gen.id, Object: "text_completion", Created: gen.created, Model: gen.g.Model,
			Choices: []completionChoice{ch}, Usage: nullUsage}
	}
	if gen0.chatAPI {
		empty := ""
		for i := range c.gens {
			first := chatChunk{ID: gen0.id, Object: "chat.completion.chunk", Created: gen0.created, Model: gen0.g.Model,
				Choices: []chatChunkChoice{{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}}}, Usage: nullUsage}
			if err := send(first); err != nil {
				c.cancelAll()
				return err
			}
		}
	} else {
		mu.Lock()
		err := ev.comment("start")
		mu.Unlock()
		if err != nil {
			c.cancelAll()
			return err
		}
	}
	err := c.runAll(ctx, func(i int, text string, lps []lpEntry) error {
		err := send(chunk(i, &text, lps, nil))
		sent[i] += len(text)
		return err
	}, func() error {
		mu.Lock()
		defer mu.Unlock()
		return ev.comment("ping")
	}, func(i int) error {
		gen := c.gens[i]
		for j, call := range gen.calls {
			send(chatChunk{ID: gen.id, Object: "chat.completion.chunk", Created: gen.created, Model: gen.g.Model,
				Choices: []chatChunkChoice{{Index: i, Delta: chatDelta{ToolCalls: []toolCallDelta{{Index: j, toolCall: call}}}}}, Usage: nullUsage})
		}
		fr := gen.finish
		if gen.chatAPI {
			return send(chunk(i, nil, nil, &fr))
		}
		empty := ""
		return send(chunk(i, &empty, nil, &fr))
	})
	if err != nil {
		c.cancelAll()
		if ev.err == nil && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
			send(struct {
				Error *apiError `json:"error"`
			}{gen0.failure(firstErr(err))})
		}
		return err
	}
	if gen0.g.IncludeUsage {
		if gen0.chatAPI {
			send(chatChunk{ID: gen0.id, Object: "chat.completion.chunk", Created: gen0.created, Model: gen0.g.Model,
				Choices: []chatChunkChoice{}, Usage: c.usage()})
		} else {
			send(completionChunk{ID: gen0.id, Object: "text_completion", Created: gen0.created, Model: gen0.g.Model,
				Choices: []completionChoice{}, Usage: c.usage()})
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return ev.done()
}

func (c *choices) cancelAll() {
	for _, g := range c.gens {
		g.st.Cancel()
	}
}
