package server

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/engine"
)

// TestSmallerValidations: fields that were accepted although they make no
// sense are 400 naming the field.
func TestSmallerValidations(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2, Context: 64}, Config{})
	cases := []struct {
		name, path, body, param string
	}{
		{"min_tokens over max_tokens", "/v1/completions", `{"prompt": "hi", "max_tokens": 2, "min_tokens": 5}`, "min_tokens"},
		{"chat min over max", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2, "min_tokens": 3}`, "min_tokens"},
		{"tool_calls a number", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": 5}], "max_tokens": 2}`, "messages[1].tool_calls"},
		{"tool_calls of strings", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": ["x"]}], "max_tokens": 2}`, "messages[1].tool_calls[0]"},
		{"tool_calls on a user", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi", "tool_calls": []}], "max_tokens": 2}`, "messages[0].tool_calls"},
		{"arguments a number", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": 3}}]}], "max_tokens": 2}`, "messages[1].tool_calls[0].function.arguments"},
		{"parameters not an object", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}], "max_tokens": 2}`, "tools[0].function.parameters"},
		{"parameters a list", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}], "max_tokens": 2}`, "tools[0].function.parameters"},
	}
	for _, c := range cases {
		resp, data := e.post(c.path, c.body)
		var body struct {
			Error struct {
				Param *string `json:"param"`
			} `json:"error"`
		}
		json.Unmarshal(data, &body)
		if resp.StatusCode != 400 || body.Error.Param == nil || *body.Error.Param != c.param {
			t.Errorf("%s: %d %s; want 400 with param %s", c.name, resp.StatusCode, data, c.param)
		}
	}
	// The valid forms still pass.
	for _, body := range []string{
		`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "1"}], "max_tokens": 2}`,
		`{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], "max_tokens": 2}`,
		`{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "min_tokens": 3}`,
	} {
		if resp, data := e.post("/v1/chat/completions", body); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", body, resp.StatusCode, data)
		}
	}
}

// TestTopLogprobsSameText: candidates whose texts are equal (byte tokens
// of an incomplete character all read U+FFFD) share one key of the
// completions map, holding the sum of their probabilities; none is lost.
func TestTopLogprobsSameText(t *testing.T) {
	_, tok := loadDemo(t)
	gen := &generation{b: &Backend{Tokenizer: tok, anchor: -1}}
	byText := map[string][]int{}
	for id := range tok.VocabSize() {
		s := gen.tokenText(id)
		byText[s] = append(byText[s], id)
	}
	var same []int
	for _, ids := range byText {
		if len(ids) >= 2 {
			same = ids[:2]
			break
		}
	}
	if same == nil {
		t.Fatal("the demo vocabulary has no two tokens of one text")
	}
	other := -1
	for id := range tok.VocabSize() {
		if gen.tokenText(id) != gen.tokenText(same[0]) && strings.TrimSpace(gen.tokenText(id)) != "" {
			other = id
			break
		}
	}
	lps := []lpEntry{{id: other, logprob: -0.5, top: []engine.TokenLogprob{{Token: other, Logprob: -0.5}, {Token: same[0], Logprob: -1.5}, {Token: same[1], Logprob: -2.5}}}}
	out := gen.completionLogprobs(lps, 0)
	top := out.TopLogprobs[0]
	want := math.Log(math.Exp(-1.5) + math.Exp(-2.5))
	if len(top) != 2 || math.Abs(top[gen.tokenText(same[0])]-want) > 1e-12 || top[gen.tokenText(other)] != -0.5 {
		t.Errorf("top_logprobs %v: want the two same-text tokens as one entry of %v", top, want)
	}
}
