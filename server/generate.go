package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/tokenizer"
)

// handleGeneration returns the handler of a generation endpoint: the
// steps both share around prompt, which decodes the body and turns it
// into prompt ids.
func (s *Server) handleGeneration(chatAPI bool, prompt func(b *Backend, body []byte) (*genParams, []int, *apiError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		b, e := s.ready()
		if e != nil {
			writeError(w, e)
			return
		}
		release, e := s.admitPrompt(r.Context(), b)
		if e != nil {
			writeError(w, e)
			return
		}
		defer func() {
			if release != nil {
				release()
			}
		}()
		body, e := s.readBody(w, r, b)
		if e != nil {
			writeError(w, e)
			return
		}
		g, ids, e := prompt(b, body)
		body = nil
		release()
		release = nil
		if e != nil {
			writeError(w, e)
			return
		}
		s.generate(w, r, b, g, ids, chatAPI, start)
	}
}

// chatPrompt decodes a chat request and renders its messages with the
// chat template.
func (s *Server) chatPrompt(b *Backend, body []byte) (*genParams, []int, *apiError) {
	req, e := decodeChatRequest(body, b.Engine.VocabSize())
	if e != nil {
		return nil, nil, e
	}
	if e := s.checkModel(&req.genParams); e != nil {
		return nil, nil, e
	}
	if e := b.checkPromptBytes(textBytes(req.Messages)+textBytes(req.Tools), "messages"); e != nil {
		return nil, nil, e
	}
	in := chat.Input{Messages: req.Messages, Tools: req.Tools, AddGenerationPrompt: true, Extra: map[string]any{}}
	for k, v := range b.SpecialTokens {
		switch k {
		case "bos_token":
			in.BOS = v
		case "eos_token":
			in.EOS = v
		default:
			in.Extra[k] = v
		}
	}
	// Only the template's markup becomes special tokens: the text of a
	// control token inside a message or tool definition stays text.
	ids, rendered, err := b.Template.Encode(b.Tokenizer, in, b.ChatAddSpecial)
	if err != nil {
		return nil, nil, badRequest("messages", "the chat template refused the messages: %v", err)
	}
	if rendered.Placement != chat.PlacedNone {
		s.log.Debug("control-token text in the messages encoded as text", "placement", rendered.Placement.String(), "spans", len(rendered.Spans))
	}
	if len(ids) == 0 {
		return nil, nil, badRequest("messages", "the messages render to no tokens")
	}
	if len(req.Tools) > 0 {
		req.genParams.tools = b.tools
	}
	if req.forced != nil {
		if e := forceToolCall(b, req); e != nil {
			return nil, nil, e
		}
	} else if len(req.Tools) > 0 {
		constrainToolCalls(b, req)
	}
	return &req.genParams, ids, nil
}

// completionPrompt decodes a text completion request and encodes its
// prompt.
func (s *Server) completionPrompt(b *Backend, body []byte) (*genParams, []int, *apiError) {
	req, e := decodeCompletionRequest(body, b.Engine.VocabSize())
	if e != nil {
		return nil, nil, e
	}
	if e := s.checkModel(&req.genParams); e != nil {
		return nil, nil, e
	}
	ids := req.PromptIDs
	if !req.IsIDs {
		if e := b.checkPromptBytes(int64(len(req.PromptText)), "prompt"); e != nil {
			return nil, nil, e
		}
		// An empty prompt is the beginning-of-sequence token alone. The
		// client owns the whole prompt here, so the text of special tokens
		// in it becomes those tokens (unlike chat content).
		ids = b.Tokenizer.Encode(req.PromptText, true)
	}
	if len(ids) == 0 {
		return nil, nil, badRequest("prompt", "the prompt encodes to no tokens (the tokenizer adds no BOS token)")
	}
	return &req.genParams, ids, nil
}

// checkModel resolves the model field, logs unknown fields, and refuses a
// model this server does not serve.
func (s *Server) checkModel(g *genParams) *apiError {
	if len(g.Unknown) > 0 {
		s.log.Debug("ignored unknown request fields", "fields", g.Unknown)
	}
	if g.Model == "" {
		g.Model = s.cfg.ModelID
		return nil
	}
	if !s.serves(g.Model) {
		return modelNotFound(g.Model)
	}
	return nil
}

// usage is the token count of a response.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	// PromptTokensDetails.CachedTokens counts the prompt tokens continued
	// from an earlier request's state instead of being computed.
	PromptTokensDetails promptTokensDetails `json:"prompt_tokens_details"`
}

type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// lpEntry is one generated token with its log-probability, kept until its
// text is sent.
type lpEntry struct {
	id      int
	logprob float32
	top     []engine.TokenLogprob
}

// generation is one request being served.
type generation struct {
	s       *Server
	b       *Backend
	g       *genParams
	chatAPI bool
	id      string
	created int64
	start   time.Time
	prompt  int
	st      *engine.Stream
	tokens  int // completion tokens so far
	text    *textStream
	pending []lpEntry
	lastTok time.Time
	finish  string
	calls   []toolCall // parsed out of the output at its end
}

func (s *Server) generate(w http.ResponseWriter, r *http.Request, b *Backend, g *genParams, ids []int, chatAPI bool, start time.Time) {
	promptParam := "prompt"
	if chatAPI {
		promptParam = "messages"
	}
	n := b.Engine.Config().Context
	if len(ids) >= n {
		writeError(w, badRequest(promptParam, "this model's context length is %d tokens and the %s has %d: no room for output", n, promptParam, len(ids)).withCode("context_length_exceeded"))
		return
	}
	if g.MaxTokens > 0 && len(ids)+g.MaxTokens > n {
		name := "max_tokens"
		if chatAPI {
			name = "max_completion_tokens"
		}
		writeError(w, badRequest("max_tokens", "the %s has %d tokens and %s is %d: %d in all, more than the context length of %d", promptParam, len(ids), name, g.MaxTokens, len(ids)+g.MaxTokens, n).withCode("context_length_exceeded"))
		return
	}
	if !g.SeedSet {
		g.Sampling.Seed = rand.Uint64()
	}
	minTokens := g.MinTokens
	if g.MaxTokens > 0 {
		minTokens = min(minTokens, g.MaxTokens)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if s.cfg.RequestTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout-time.Since(start))
		defer cancel()
	}
	req := engine.Request{
		Prompt: ids, MaxTokens: g.MaxTokens, MinTokens: minTokens, Sampling: g.Sampling,
		IgnoreEOS: g.IgnoreEOS, StopTokens: g.StopTokenIDs, LogitBias: g.LogitBias,
		Logprobs: g.Logprobs, TopLogprobs: g.TopLogprobs,
	}
	constraint, e := s.constraints(b, g)
	if e != nil {
		writeError(w, e)
		return
	}
	if g.N > 1 {
		s.generateChoices(ctx, w, b, g, req, constraint, chatAPI, start)
		return
	}
	if constraint != nil {
		req.Constraint = constraint()
	}
	st, err := b.Engine.Submit(ctx, req)
	if err != nil {
		if e := submitError(ctx, b, err); e != nil {
			writeError(w, e)
		}
		return
	}
	s.metrics.promptTokens.Add(float64(len(ids)))
	// The body has been read: lift the read deadline so a long stream is
	// not cut off by the server's ReadTimeout.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})

	gen := &generation{
		s: s, b: b, g: g, chatAPI: chatAPI, start: start, prompt: len(ids), st: st,
		created: time.Now().Unix(), text: newTextStream(b.Tokenizer, ids, g.Stop),
	}
	if g.tools != nil {
		gen.text.tools = newToolStream(g.tools)
	}
	events := st.Events()
	if s.eventFilter != nil {
		events = s.eventFilter(ctx, events)
	}
	if chatAPI {
		gen.id = newID("chatcmpl-")
	} else {
		gen.id = newID("cmpl-")
	}
	var runErr error
	if g.Stream {
		runErr = gen.stream(ctx, cancel, w, rc, events)
	} else {
		runErr = gen.respond(ctx, cancel, w, events)
	}
	s.metrics.outputTokens.Add(float64(gen.tokens))
	endpoint := "/v1/completions"
	if chatAPI {
		endpoint = "/v1/chat/completions"
	}
	s.metrics.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	attrs := []any{"id", gen.id, "endpoint", endpoint, "stream", g.Stream, "prompt_tokens", gen.prompt,
		"completion_tokens", gen.tokens, "duration", time.Since(start).Round(time.Millisecond)}
	if runErr != nil {
		s.log.Info("generation ended early", append(attrs, "error", runErr.Error())...)
	} else {
		s.log.Info("generation", append(attrs, "finish_reason", gen.finish)...)
	}
}

// submitError is the API error for a refused submission; nil when the
// client is gone.
func submitError(ctx context.Context, b *Backend, err error) *apiError {
	switch {
	case errors.Is(err, engine.ErrQueueFull):
		return &apiError{status: http.StatusTooManyRequests, Type: typeRateLimit, retryAfter: time.Second,
			Message: fmt.Sprintf("the server is busy: all %d slots are in use and %d requests are queued; retry later", b.Engine.Config().MaxBatch, b.Engine.Config().MaxQueue)}
	case errors.Is(err, engine.ErrDraining):
		return unavailable("the server is shutting down")
	case errors.Is(err, engine.ErrInvalidRequest):
		return badRequest("", "%v", err)
	case ctx.Err() != nil:
		return nil
	}
	return unavailable("the engine is not running")
}

// run reads the engine's events until the request ends, handing released
// text (and the log-probabilities of its tokens) to emit and calling ping
// while waiting. A stop string ends the request at once (cancel frees
// its engine slot). Tool calls parsed out of the text end up in
// gen.calls, with finish reason "tool_calls". It returns the engine's or
// the context's error, or emit's.
func (gen *generation) run(ctx context.Context, cancel context.CancelFunc, events <-chan engine.Event, emit func(text string, lps []lpEntry) error, ping func() error) error {
	var tick <-chan time.Time
	if ping != nil {
		t := time.NewTicker(gen.s.cfg.PingInterval)
		defer t.Stop()
		tick = t.C
	}
	wantLP := gen.g.Logprobs
	release := func(text string) error {
		if text == "" && len(gen.pending) == 0 {
			return nil
		}
		err := emit(text, gen.pending)
		gen.pending = nil
		return err
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return errors.New("server: engine stream closed without a terminal event")
			}
			if ev.HasToken() {
				now := time.Now()
				if gen.tokens == 0 {
					gen.s.metrics.ttft.Observe(now.Sub(gen.start).Seconds())
				} else {
					gen.s.metrics.itl.Observe(now.Sub(gen.lastTok).Seconds())
				}
				gen.lastTok = now
				gen.tokens++
				if wantLP {
					gen.pending = append(gen.pending, lpEntry{id: ev.Token, logprob: ev.Logprob, top: ev.Top})
				}
				text, stopped := gen.text.add(ev.Token)
				if err := release(text); err != nil {
					cancel()
					return err
				}
				if stopped {
					cancel()
					// The engine ends the request at its next step and
					// stores its state (Config.Store) before closing the
					// stream: wait for that, so that the client's next
					// request, here or at a replica, finds it.
					for range events {
					}
					gen.finish = "stop"
					gen.endTools()
					return nil
				}
			}
			if ev.Err != nil {
				return ev.Err
			}
			if ev.Finish != "" {
				text, stopped := gen.text.finish()
				if err := release(text); err != nil {
					return err
				}
				gen.finish = string(ev.Finish)
				if stopped {
					gen.finish = "stop"
				}
				gen.endTools()
				return nil
			}
		case <-tick:
			if err := ping(); err != nil {
				cancel()
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// endTools takes the tool calls of the ended text, giving each an id.
func (gen *generation) endTools() {
	gen.calls = gen.text.toolCalls()
	for i := range gen.calls {
		gen.calls[i].ID = newID("call_")
	}
	if len(gen.calls) > 0 {
		gen.finish = "tool_calls"
	}
}

// failure turns an error that ended a generation into the API error to
// report.
func (gen *generation) failure(err error) *apiError {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusRequestTimeout, Type: typeTimeout, Code: ptr("request_timeout"), noRetry: true,
			Message: fmt.Sprintf("the request took longer than the server's limit of %v", gen.s.cfg.RequestTimeout)}
	case errors.Is(err, engine.ErrShutdown):
		return unavailable("the server shut down before the request finished")
	case errors.Is(err, engine.ErrNonFinite):
		return internalError("the model produced non-finite logits")
	case errors.Is(err, engine.ErrConstraint):
		return internalError("no token of the vocabulary can continue the response_format's JSON here (the logit bias may have removed them)")
	}
	if pe, ok := errors.AsType[*engine.PanicError](err); ok {
		gen.s.log.Error("request failed on a recovered panic", "id", gen.id, "where", pe.Where, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	}
	return internalError("internal error while generating")
}

func (gen *generation) usage() *usage {
	return &usage{PromptTokens: gen.prompt, CompletionTokens: gen.tokens, TotalTokens: gen.prompt + gen.tokens,
		PromptTokensDetails: promptTokensDetails{CachedTokens: gen.st.CachedTokens()}}
}

// tokenText is the text of one token for log-probability reports: what it
// adds after an ordinary token, since decoders such as Metaspace drop the
// leading space of a sequence's first token.
func (gen *generation) tokenText(id int) string { return tokenText(gen.b.Tokenizer, gen.b.anchor, id) }

func tokenText(tok *tokenizer.Tokenizer, anchor, id int) string {
	if anchor >= 0 {
		base := tok.Decode([]int{anchor}, false)
		if full := tok.Decode([]int{anchor, id}, false); strings.HasPrefix(full, base) {
			return full[len(base):]
		}
	}
	return tok.Decode([]int{id}, false)
}

// finiteLP replaces -Inf (a masked token) by -9999, as OpenAI reports it;
// JSON has no infinities.
func finiteLP(x float32) float64 {
	if math.IsInf(float64(x), -1) || math.IsNaN(float64(x)) {
		return -9999
	}
	return float64(x)
}

// Chat log-probabilities: {"content": [{"token", "logprob", "bytes",
// "top_logprobs": [...]}]}.
type chatLogprobs struct {
	Content []chatLogprob `json:"content"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type chatLogprob struct {
	chatTopLogprob
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

func (gen *generation) chatTop(id int, lp float32) chatTopLogprob {
	t := gen.tokenText(id)
	b := make([]int, len(t))
	for i := range len(t) {
		b[i] = int(t[i])
	}
	return chatTopLogprob{Token: t, Logprob: finiteLP(lp), Bytes: b}
}

func (gen *generation) chatLogprobs(lps []lpEntry) *chatLogprobs {
	out := &chatLogprobs{Content: make([]chatLogprob, 0, len(lps))}
	for _, e := range lps {
		c := chatLogprob{chatTopLogprob: gen.chatTop(e.id, e.logprob), TopLogprobs: []chatTopLogprob{}}
		for _, t := range e.top {
			c.TopLogprobs = append(c.TopLogprobs, gen.chatTop(t.Token, t.Logprob))
		}
		out.Content = append(out.Content, c)
	}
	return out
}

// Completion log-probabilities, in the legacy layout.
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// completionLogprobs reports lps; offset is the length of the text sent
// before them.
func (gen *generation) completionLogprobs(lps []lpEntry, offset int) *completionLogprobs {
	out := &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, e := range lps {
		t := gen.tokenText(e.id)
		out.Tokens = append(out.Tokens, t)
		out.TokenLogprobs = append(out.TokenLogprobs, finiteLP(e.logprob))
		top := map[string]float64{}
		for _, a := range e.top {
			k := gen.tokenText(a.Token)
			if lp, dup := top[k]; dup {
				// Tokens of one text (byte tokens of an incomplete
				// character all read U+FFFD) share its key: the entry is
				// the probability of the text, their sum.
				top[k] = logAddExp(lp, finiteLP(a.Logprob))
			} else {
				top[k] = finiteLP(a.Logprob)
			}
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
		out.TextOffset = append(out.TextOffset, offset)
		offset += len(t)
	}
	return out
}

// Non-streaming responses.

type chatMessage struct {
	Role string `json:"role"`
	// Content is null when the message is tool calls alone.
	Content   *string    `json:"content"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      chatMessage   `json:"message"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

// respond serves a non-streaming request.
func (gen *generation) respond(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter, events <-chan engine.Event) error {
	var text []byte
	var lps []lpEntry
	err := gen.run(ctx, cancel, events, func(t string, l []lpEntry) error {
		text = append(text, t...)
		lps = append(lps, l...)
		return nil
	}, nil)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return err // the client is gone
		}
		writeError(w, gen.failure(err))
		return err
	}
	if gen.chatAPI {
		content := ptr(string(text))
		if len(gen.calls) > 0 && len(text) == 0 {
			content = nil
		}
		c := chatChoice{Message: chatMessage{Role: "assistant", Content: content, ToolCalls: gen.calls}, FinishReason: gen.finish}
		if gen.g.Logprobs {
			c.Logprobs = gen.chatLogprobs(lps)
		}
		writeJSON(w, http.StatusOK, chatResponse{ID: gen.id, Object: "chat.completion", Created: gen.created, Model: gen.g.Model,
			Choices: []chatChoice{c}, Usage: gen.usage()})
		return nil
	}
	fr := gen.finish
	c := completionChoice{Text: string(text), FinishReason: &fr}
	if gen.g.Logprobs {
		c.Logprobs = gen.completionLogprobs(lps, 0)
	}
	writeJSON(w, http.StatusOK, completionResponse{ID: gen.id, Object: "text_completion", Created: gen.created, Model: gen.g.Model,
		Choices: []completionChoice{c}, Usage: gen.usage()})
	return nil
}

// Streaming chunks.

type chatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []toolCallDelta `json:"tool_calls,omitempty"`
}

type chatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        chatDelta     `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	// Usage is absent without include_usage, null on every chunk but
	// the last with it.
	Usage any `json:"usage,omitempty"`
}

type completionChunk struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   any                `json:"usage,omitempty"`
}

// stream serves a streaming request as server-sent events.
func (gen *generation) stream(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter, rc *http.ResponseController, events <-chan engine.Event) error {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ev := &sseWriter{w: w, rc: rc, timeout: gen.s.cfg.WriteTimeout}
	// The connection may serve further requests: lift the last deadline.
	defer rc.SetWriteDeadline(time.Time{})
	var nullUsage any
	if gen.g.IncludeUsage {
		nullUsage = (*usage)(nil)
	}
	sent := 0
	chunk := func(text *string, lps []lpEntry, finish *string) any {
		if gen.chatAPI {
			c := chatChunkChoice{Delta: chatDelta{Content: text}, FinishReason: finish}
			if gen.g.Logprobs && len(lps) > 0 {
				c.Logprobs = gen.chatLogprobs(lps)
			}
			return chatChunk{ID: gen.id, Object: "chat.completion.chunk", Created: gen.created, Model: gen.g.Model,
				Choices: []chatChunkChoice{c}, Usage: nullUsage}
		}
		c := completionChoice{FinishReason: finish}
		if text != nil {
			c.Text = *text
		}
		if gen.g.Logprobs && len(lps) > 0 {
			c.Logprobs = gen.completionLogprobs(lps, sent)
		}
		return completionChunk{ID: gen.id, Object: "text_completion", Created: gen.created, Model: gen.g.Model,
			Choices: []completionChoice{c}, Usage: nullUsage}
	}
	if gen.chatAPI {
		empty := ""
		first := chatChunk{ID: gen.id, Object: "chat.completion.chunk", Created: gen.created, Model: gen.g.Model,
			Choices: []chatChunkChoice{{Delta: chatDelta{Role: "assistant", Content: &empty}}}, Usage: nullUsage}
		if err := ev.data(first); err != nil {
			cancel()
			return err
		}
	} else if err := ev.comment("start"); err != nil {
		// Headers go out at once, so clients see the stream open.
		cancel()
		return err
	}
	err := gen.run(ctx, cancel, events, func(text string, lps []lpEntry) error {
		err := ev.data(chunk(&text, lps, nil))
		sent += len(text)
		return err
	}, func() error { return ev.comment("ping") })
	if err != nil {
		if ev.err == nil && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
			e := gen.failure(err)
			ev.data(struct {
				Error *apiError `json:"error"`
			}{e})
		}
		return err
	}
	// Tool calls come whole, one chunk each, before the last chunk.
	for i, c := range gen.calls {
		ev.data(chatChunk{ID: gen.id, Object: "chat.completion.chunk", Created: gen.created, Model: gen.g.Model,
			Choices: []chatChunkChoice{{Delta: chatDelta{ToolCalls: []toolCallDelta{{Index: i, toolCall: c}}}}}, Usage: nullUsage})
	}
	fr := gen.finish
	var last any
	if gen.chatAPI {
		last = chunk(nil, nil, &fr)
	} else {
		empty := ""
		last = chunk(&empty, nil, &fr)
	}
	ev.data(last)
	if gen.g.IncludeUsage {
		if gen.chatAPI {
			ev.data(chatChunk{ID: gen.id, Object: "chat.completion.chunk", Created: gen.created, Model: gen.g.Model,
				Choices: []chatChunkChoice{}, Usage: gen.usage()})
		} else {
			ev.data(completionChunk{ID: gen.id, Object: "text_completion", Created: gen.created, Model: gen.g.Model,
				Choices: []completionChoice{}, Usage: gen.usage()})
		}
	}
	return ev.done()
}

// sseWriter writes server-sent events, flushing each and bounding each
// write by a deadline. Its first error sticks.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
	err     error
}

func (e *sseWriter) write(b []byte) error {
	if e.err != nil {
		return e.err
	}
	if err := e.rc.SetWriteDeadline(time.Now().Add(e.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		e.err = err
		return err
	}
	if _, err := e.w.Write(b); err != nil {
		e.err = err
		return err
	}
	if err := e.rc.Flush(); err != nil {
		e.err = err
	}
	return e.err
}

// data sends v as one event: "data: " + JSON + a blank line.
func (e *sseWriter) data(v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e.buf = append(append(append(e.buf[:0], "data: "...), j...), "\n\n"...)
	return e.write(e.buf)
}

// comment sends a comment line, which clients skip: a keep-alive.
func (e *sseWriter) comment(s string) error {
	e.buf = append(append(append(e.buf[:0], ": "...), s...), "\n\n"...)
	return e.write(e.buf)
}

// done ends the stream as OpenAI does.
func (e *sseWriter) done() error { return e.write([]byte("data: [DONE]\n\n")) }
