package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/openai/openai-go/v3"
)

// These tests drive the server with the official Go client.

func TestOpenAIModels(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{Aliases: []string{"jamba"}})
	c := e.client()
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{demo.Name, "jamba"}) {
		t.Errorf("models %v", ids)
	}
	m, err := c.Models.Get(context.Background(), "jamba")
	if err != nil || m.ID != "jamba" {
		t.Errorf("Get(jamba) = %+v, %v", m, err)
	}
	_, err = c.Models.Get(context.Background(), "gpt-4")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("Get(gpt-4) error = %v", err)
	}
}

var completionPrompts = []string{"func main() {", "package ", "", "\tif err != nil {\n\t\treturn", "// Copyright 2009 The Go Authors"}

// TestOpenAICompletionsGreedy checks that temperature 0 through the API
// gives model.Generate's tokens and text, with and without streaming.
func TestOpenAICompletionsGreedy(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 4}, Config{})
	c := e.client()
	ctx := context.Background()
	for _, p := range completionPrompts {
		prompt := e.tok.Encode(p, true)
		ids, want, finish := greedy(t, prompt, 40)
		params := openai.CompletionNewParams{
			Model:       demo.Name,
			Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)},
			MaxTokens:   openai.Int(40),
			Temperature: openai.Float(0),
			Logprobs:    openai.Int(1),
		}
		res, err := c.Completions.New(ctx, params)
		if err != nil {
			t.Fatalf("prompt %q: %v", p, err)
		}
		ch := res.Choices[0]
		if ch.Text != want || string(ch.FinishReason) != finish {
			t.Errorf("prompt %q: got %q (%s), want %q (%s)", p, ch.Text, ch.FinishReason, want, finish)
		}
		if !slices.Equal(ch.Logprobs.Tokens, tokenTexts(e.tok, ids)) {
			t.Errorf("prompt %q: tokens %q, want %q", p, ch.Logprobs.Tokens, tokenTexts(e.tok, ids))
		}
		if res.Usage.PromptTokens != int64(len(prompt)) || res.Usage.CompletionTokens != int64(len(ids)) || res.Usage.TotalTokens != int64(len(prompt)+len(ids)) {
			t.Errorf("prompt %q: usage %+v, want %d + %d", p, res.Usage, len(prompt), len(ids))
		}

		params.StreamOptions.IncludeUsage = openai.Bool(true)
		s := c.Completions.NewStreaming(ctx, params)
		var text strings.Builder
		var toks []string
		var gotFinish string
		var usage openai.CompletionUsage
		for s.Next() {
			ck := s.Current()
			if ck.JSON.Usage.Valid() && ck.Usage.TotalTokens > 0 {
				usage = ck.Usage
			}
			for _, c := range ck.Choices {
				text.WriteString(c.Text)
				toks = append(toks, c.Logprobs.Tokens...)
				if c.FinishReason != "" {
					gotFinish = string(c.FinishReason)
				}
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("prompt %q stream: %v", p, err)
		}
		if text.String() != want || gotFinish != finish || !slices.Equal(toks, tokenTexts(e.tok, ids)) {
			t.Errorf("prompt %q stream: got %q %q (%s), want %q (%s)", p, text.String(), toks, gotFinish, want, finish)
		}
		if usage.CompletionTokens != int64(len(ids)) || usage.PromptTokens != int64(len(prompt)) {
			t.Errorf("prompt %q stream: usage %+v", p, usage)
		}
	}
}

// TestOpenAICompletionTokenPrompt sends the prompt as token ids.
func TestOpenAICompletionTokenPrompt(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	prompt := []int64{1, 859, 785, 462, 546, 480}
	ids := []int{1, 859, 785, 462, 546, 480}
	_, want, _ := greedy(t, ids, 12)
	c := e.client()
	res, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:     demo.Name,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: prompt},
		MaxTokens: openai.Int(12), Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Text != want {
		t.Errorf("got %q, want %q", res.Choices[0].Text, want)
	}
}

func TestOpenAIChatGreedy(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 4}, Config{})
	c := e.client()
	ctx := context.Background()
	// The demo model has no chat template: the default transcript applies.
	prompt := e.tok.Encode("system: You write Go.\n\nuser: A function that adds two ints.\n\nassistant:", true)
	ids, want, finish := greedy(t, prompt, 30)
	params := openai.ChatCompletionNewParams{
		Model: demo.Name,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You write Go."),
			openai.UserMessage("A function that adds two ints."),
		},
		MaxCompletionTokens: openai.Int(30),
		Temperature:         openai.Float(0),
		Logprobs:            openai.Bool(true),
		TopLogprobs:         openai.Int(2),
	}
	res, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	ch := res.Choices[0]
	if ch.Message.Content != want || string(ch.FinishReason) != finish || ch.Message.Role != "assistant" {
		t.Errorf("got %q (%s), want %q (%s)", ch.Message.Content, ch.FinishReason, want, finish)
	}
	var toks []string
	for _, lp := range ch.Logprobs.Content {
		toks = append(toks, lp.Token)
		if len(lp.TopLogprobs) != 2 || lp.TopLogprobs[0].Token != lp.Token || lp.TopLogprobs[0].Logprob != lp.Logprob {
			t.Errorf("greedy token %q (%g): top %+v", lp.Token, lp.Logprob, lp.TopLogprobs)
		}
	}
	if !slices.Equal(toks, tokenTexts(e.tok, ids)) {
		t.Errorf("tokens %q, want %q", toks, tokenTexts(e.tok, ids))
	}
	if res.Usage.PromptTokens != int64(len(prompt)) || res.Usage.CompletionTokens != int64(len(ids)) {
		t.Errorf("usage %+v, want %d + %d", res.Usage, len(prompt), len(ids))
	}
	if res.Object != "chat.completion" || !strings.HasPrefix(res.ID, "chatcmpl-") || res.Model != demo.Name {
		t.Errorf("envelope: %s %s %s", res.Object, res.ID, res.Model)
	}

	params.StreamOptions.IncludeUsage = openai.Bool(true)
	s := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	var text strings.Builder
	toks = nil
	first, chunks := true, 0
	for s.Next() {
		ck := s.Current()
		acc.AddChunk(ck)
		chunks++
		if first {
			if len(ck.Choices) != 1 || ck.Choices[0].Delta.Role != "assistant" {
				t.Errorf("first chunk %s", ck.RawJSON())
			}
			first = false
		}
		if ck.ID != s.Current().ID || ck.Object != "chat.completion.chunk" {
			t.Errorf("chunk envelope %s", ck.RawJSON())
		}
		for _, c := range ck.Choices {
			text.WriteString(c.Delta.Content)
			for _, lp := range c.Logprobs.Content {
				toks = append(toks, lp.Token)
			}
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != want || !slices.Equal(toks, tokenTexts(e.tok, ids)) {
		t.Errorf("stream: got %q %q, want %q", text.String(), toks, want)
	}
	if got := acc.Choices[0]; got.Message.Content != want || string(got.FinishReason) != finish {
		t.Errorf("accumulated: %q (%s)", got.Message.Content, got.FinishReason)
	}
	if acc.Usage.CompletionTokens != int64(len(ids)) || acc.Usage.PromptTokens != int64(len(prompt)) {
		t.Errorf("stream usage %+v", acc.Usage)
	}
}

// TestOpenAIStop checks a stop string that spans tokens: the output ends
// before it, it is never sent, and streaming agrees.
func TestOpenAIStop(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	c := e.client()
	ctx := context.Background()
	p := "func (s *Server) "
	_, full, _ := greedy(t, e.tok.Encode(p, true), 40)
	if len(full) < 20 {
		t.Fatalf("reference too short: %q", full)
	}
	stop := full[8:14] // spans token boundaries in general
	want := full[:strings.Index(full, stop)]
	params := openai.CompletionNewParams{
		Model:     demo.Name,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)},
		Stop:      openai.CompletionNewParamsStopUnion{OfStringArray: []string{"never appears", stop}},
		MaxTokens: openai.Int(40), Temperature: openai.Float(0),
	}
	res, err := c.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Text != want || res.Choices[0].FinishReason != "stop" {
		t.Errorf("got %q (%s), want %q (stop) for stop %q", res.Choices[0].Text, res.Choices[0].FinishReason, want, stop)
	}
	s := c.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	var finish string
	for s.Next() {
		for _, ch := range s.Current().Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != want || finish != "stop" {
		t.Errorf("stream: got %q (%s), want %q", text.String(), finish, want)
	}
	waitIdle(t, e.eng)
}

func TestOpenAIErrors(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2, Context: 64}, Config{})
	c := e.client()
	ctx := context.Background()
	long := strings.Repeat("x := 1\n", 100)
	cases := []struct {
		name   string
		params openai.ChatCompletionNewParams
		status int
		param  string
		code   string
	}{
		{"n", openai.ChatCompletionNewParams{Model: demo.Name, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, N: openai.Int(3)}, 400, "n", ""},
		{"model", openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}, 404, "model", "model_not_found"},
		{"context", openai.ChatCompletionNewParams{Model: demo.Name, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(long)}}, 400, "messages", "context_length_exceeded"},
		{"max tokens", openai.ChatCompletionNewParams{Model: demo.Name, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, MaxCompletionTokens: openai.Int(60)}, 400, "max_tokens", "context_length_exceeded"},
		{"temperature", openai.ChatCompletionNewParams{Model: demo.Name, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, Temperature: openai.Float(2.5)}, 400, "temperature", ""},
	}
	for _, tc := range cases {
		check := func(err error, how string) {
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Errorf("%s %s: error %v, want an API error", tc.name, how, err)
				return
			}
			if apiErr.StatusCode != tc.status || apiErr.Param != tc.param || apiErr.Code != tc.code {
				t.Errorf("%s %s: %d param %q code %q, want %d %q %q (%s)", tc.name, how, apiErr.StatusCode, apiErr.Param, apiErr.Code, tc.status, tc.param, tc.code, apiErr.Message)
			}
		}
		_, err := c.Chat.Completions.New(ctx, tc.params)
		check(err, "")
		// Errors found before the stream starts keep their status.
		s := c.Chat.Completions.NewStreaming(ctx, tc.params)
		for s.Next() {
		}
		check(s.Err(), "streaming")
	}
	// The server keeps serving.
	res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: demo.Name, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, MaxTokens: openai.Int(3)})
	if err != nil || len(res.Choices) != 1 {
		t.Fatalf("good request after errors: %v", err)
	}
}

// TestOpenAIPrefixReuse: a completion whose token prompt continues an
// earlier one (its prompt and output) reports the tokens it continued in
// usage.prompt_tokens_details.cached_tokens, and its text is the greedy
// continuation all the same, streaming and not; /metrics counts them.
func TestOpenAIPrefixReuse(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	c := e.client()
	first := []int{1, 859, 785, 462, 546, 480}
	out, _, finish := greedy(t, first, 12)
	if finish != "length" {
		t.Fatalf("the first greedy continuation stopped (%s); pick another prompt", finish)
	}
	complete := func(ids []int, stream bool) (string, openai.CompletionUsage) {
		t.Helper()
		prompt := make([]int64, len(ids))
		for i, id := range ids {
			prompt[i] = int64(id)
		}
		p := openai.CompletionNewParams{
			Model:     demo.Name,
			Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: prompt},
			MaxTokens: openai.Int(12), Temperature: openai.Float(0),
		}
		if !stream {
			res, err := c.Completions.New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			return res.Choices[0].Text, res.Usage
		}
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := c.Completions.NewStreaming(context.Background(), p)
		var text strings.Builder
		var u openai.CompletionUsage
		for s.Next() {
			ch := s.Current()
			for _, ch := range ch.Choices {
				text.WriteString(ch.Text)
			}
			if ch.Usage.PromptTokens > 0 {
				u = ch.Usage
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		return text.String(), u
	}
	if _, u := complete(first, false); u.PromptTokensDetails.CachedTokens != 0 {
		t.Fatalf("the first request reports %d cached tokens", u.PromptTokensDetails.CachedTokens)
	}
	// The state holds the prompt and the output but its last token (sampled,
	// never fed).
	cached := int64(len(first) + len(out) - 1)
	second := slices.Concat(first, out, []int{462})
	_, want, _ := greedy(t, second, 12)
	for _, stream := range []bool{false, true} {
		text, u := complete(second, stream)
		if text != want {
			t.Errorf("stream=%v: %q, want %q", stream, text, want)
		}
		if u.PromptTokensDetails.CachedTokens != cached || u.PromptTokens != int64(len(second)) {
			t.Errorf("stream=%v: usage %+v, want %d cached of %d prompt tokens", stream, u, cached, len(second))
		}
		// The second request's own state now holds second and its output:
		// send the first's continuation again for the streaming round.
		complete(first, false)
	}
	resp, err := e.ts.Client().Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), fmt.Sprintf("jamba_prompt_tokens_cached_total %d", 2*cached)) {
		t.Errorf("/metrics does not count %d cached tokens:\n%s", 2*cached, body)
	}
}
