package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/sample"
)

// Request bounds the decoder enforces (every one quoted by its error).
const (
	maxStops         = 16   // entries of stop
	maxStopBytes     = 256  // bytes of one stop entry
	maxLogitBias     = 1024 // entries of logit_bias
	maxStopTokenIDs  = 1024 // entries of stop_token_ids
	maxMessages      = 4096 // entries of messages
	maxTools         = 256  // entries of tools
	maxTopLogprobs   = 20   // top_logprobs, and logprobs of /v1/completions
	logitBiasLimit   = 100  // logit_bias values are clamped to ±this
	defaultMaxTokens = 16   // max_tokens of /v1/completions when absent, as OpenAI
)

// FixedLimits describes the request limits that no flag changes, for
// help texts.
func FixedLimits() string {
	return fmt.Sprintf("n: at most %d and at most --max-batch; best_of is refused; stop: at most %d entries of at most %d bytes;\n"+
		"logit_bias: at most %d entries, values clamped to ±%d; stop_token_ids: at most %d;\n"+
		"messages: at most %d; tools: at most %d; top_logprobs (and completions logprobs): at most %d;\n"+
		"max_tokens defaults to %d for /v1/completions and to the rest of the context for chat",
		maxChoices, maxStops, maxStopBytes, maxLogitBias, logitBiasLimit, maxStopTokenIDs, maxMessages, maxTools, maxTopLogprobs, defaultMaxTokens)
}

// genParams are the fields chat and text completions share, decoded and
// checked.
type genParams struct {
	Model        string
	Stream       bool
	IncludeUsage bool
	MaxTokens    int // 0: not given
	Sampling     sample.Params
	SeedSet      bool
	Stop         []string
	Logprobs     bool
	TopLogprobs  int
	MinTokens    int
	IgnoreEOS    bool
	StopTokenIDs []int
	LogitBias    map[int]float32
	// N is the number of choices (n).
	N int
	// format is response_format when it asks for JSON; nil: text.
	format *responseFormat
	// tools is the tool-call format to parse out of the output: set for a
	// chat request with tools (and tool_choice not "none") when the
	// template has one.
	tools *toolFormat
	// Unknown lists the fields the server does not know, ignored.
	Unknown []string
}

// chatRequest is a decoded POST /v1/chat/completions body.
type chatRequest struct {
	genParams
	Messages []chat.Message
	Tools    []any // nil: none
	// toolParams are the tools' parameters schemas (nil: none given), and
	// forced the tool_choice that requires a call; nil: auto.
	toolNames  []string
	toolParams []json.RawMessage
	forced     *forcedTool
}

// completionRequest is a decoded POST /v1/completions body: the prompt is
// either text or token ids.
type completionRequest struct {
	genParams
	PromptText string
	PromptIDs  []int
	IsIDs      bool
}

// common decodes the fields chat and text completions share. maxName is
// the preferred length field (max_completion_tokens for chat).
func (f *fields) common(g *genParams, chatAPI bool) {
	f.str("model", &g.Model)
	f.boolean("stream", &g.Stream)
	if raw, ok := f.get("stream_options"); ok {
		if !g.Stream {
			f.fail(badRequest("stream_options", "stream_options is only allowed with stream: true"))
		}
		var so map[string]json.RawMessage
		if raw[0] != '{' || json.Unmarshal(raw, &so) != nil {
			f.fail(badRequest("stream_options", "stream_options must be an object, got %s", kind(raw)))
		} else if v, ok := so["include_usage"]; ok && string(v) != "null" {
			switch string(v) {
			case "true":
				g.IncludeUsage = true
			case "false":
			default:
				f.fail(badRequest("stream_options.include_usage", "stream_options.include_usage must be a boolean, got %s", kind(v)))
			}
		}
	}

	// Lengths: the API has no "infinite"; max_completion_tokens wins.
	const maxInt = math.MaxInt32
	var mt, mct int
	if f.intIn("max_tokens", 1, maxInt, &mt) {
		g.MaxTokens = mt
	}
	if chatAPI && f.intIn("max_completion_tokens", 1, maxInt, &mct) {
		g.MaxTokens = mct
	}
	if f.intIn("min_tokens", 0, maxInt, &g.MinTokens) && g.MaxTokens > 0 && g.MinTokens > g.MaxTokens {
		f.fail(badRequest("min_tokens", "min_tokens %d is more than max_tokens %d", g.MinTokens, g.MaxTokens))
	}

	p := &g.Sampling
	p.Temperature, p.TopP, p.RepetitionPenalty = 1, 1, 1
	f.number("temperature", func(v float64) bool { return v >= 0 && v <= 2 }, "in [0, 2]", &p.Temperature)
	f.number("top_p", func(v float64) bool { return v > 0 && v <= 1 }, "in (0, 1]", &p.TopP)
	f.intIn("top_k", -1, maxInt, &p.TopK)
	f.number("min_p", func(v float64) bool { return v >= 0 && v <= 1 }, "in [0, 1]", &p.MinP)
	f.number("presence_penalty", func(v float64) bool { return v >= -2 && v <= 2 }, "in [-2, 2]", &p.PresencePenalty)
	f.number("frequency_penalty", func(v float64) bool { return v >= -2 && v <= 2 }, "in [-2, 2]", &p.FrequencyPenalty)
	f.number("repetition_penalty", func(v float64) bool { return v > 0 && v <= 1e6 }, "in (0, 1e6]", &p.RepetitionPenalty)
	var seed int64
	if f.integer("seed", &seed) {
		p.Seed, g.SeedSet = uint64(seed), true
	}

	g.N = 1
	f.intIn("n", 1, maxChoices, &g.N)
	f.bestOf()
	f.stop(g)
	f.boolean("ignore_eos", &g.IgnoreEOS)
	if raw, ok := f.get("stop_token_ids"); ok {
		var list []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
			f.fail(badRequest("stop_token_ids", "stop_token_ids must be an array of integers, got %s", kind(raw)))
		} else if len(list) > maxStopTokenIDs {
			f.fail(badRequest("stop_token_ids", "stop_token_ids has %d entries, more than the limit of %d", len(list), maxStopTokenIDs))
		} else {
			for _, r := range list {
				id, e := parseInt("stop_token_ids", r)
				if e == nil && (id < 0 || id >= int64(f.vocab)) {
					e = badRequest("stop_token_ids", "stop_token_ids entry %d is outside the vocabulary [0, %d)", id, f.vocab)
				}
				if e != nil {
					f.fail(e)
					break
				}
				g.StopTokenIDs = append(g.StopTokenIDs, int(id))
			}
		}
	}
	f.logitBias(g)
	f.ignore("user", "store", "metadata", "service_tier", "parallel_tool_calls")
}

func (f *fields) stop(g *genParams) {
	raw, ok := f.get("stop")
	if !ok {
		return
	}
	var list []string
	switch raw[0] {
	case '"':
		var s string
		json.Unmarshal(raw, &s)
		list = []string{s}
	case '[':
		var items []json.RawMessage
		json.Unmarshal(raw, &items)
		for _, it := range items {
			var s string
			if kind(it) != "a string" || json.Unmarshal(it, &s) != nil {
				f.fail(badRequest("stop", "stop entries must be strings, got %s", kind(it)))
				return
			}
			list = append(list, s)
		}
	default:
		f.fail(badRequest("stop", "stop must be a string or an array of strings, got %s", kind(raw)))
		return
	}
	if len(list) > maxStops {
		f.fail(badRequest("stop", "stop has %d entries, more than the limit of %d", len(list), maxStops))
		return
	}
	for _, s := range list {
		switch {
		case s == "":
			f.fail(badRequest("stop", "stop cannot contain an empty string"))
			return
		case len(s) > maxStopBytes:
			f.fail(badRequest("stop", "a stop entry has %d bytes, more than the limit of %d", len(s), maxStopBytes))
			return
		}
	}
	g.Stop = list
}

func (f *fields) logitBias(g *genParams) {
	raw, ok := f.get("logit_bias")
	if !ok {
		return
	}
	var m map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		f.fail(badRequest("logit_bias", "logit_bias must be an object mapping token ids to numbers, got %s", kind(raw)))
		return
	}
	if len(m) > maxLogitBias {
		f.fail(badRequest("logit_bias", "logit_bias has %d entries, more than the limit of %d", len(m), maxLogitBias))
		return
	}
	if len(m) == 0 {
		return
	}
	g.LogitBias = make(map[int]float32, len(m))
	for k, v := range m {
		id, err := strconv.Atoi(k)
		if err != nil || id < 0 || id >= f.vocab {
			f.fail(badRequest("logit_bias", "logit_bias key %s is not a token id in [0, %d)", quoteName(k), f.vocab))
			return
		}
		b, e := parseFloat("logit_bias", v)
		if e != nil {
			f.fail(e)
			return
		}
		g.LogitBias[id] = float32(max(-logitBiasLimit, min(logitBiasLimit, b)))
	}
}

// finish reports the first error and lists the unknown fields.
func (f *fields) finish(g *genParams) *apiError {
	if f.err != nil {
		return f.err
	}
	for _, k := range f.order {
		if !f.used[k] {
			g.Unknown = append(g.Unknown, k)
		}
	}
	return nil
}

// decodeChatRequest decodes and checks a chat completion request for a
// model with vocab token ids.
func decodeChatRequest(body []byte, vocab int) (*chatRequest, *apiError) {
	f, e := parseObject(body, vocab)
	if e != nil {
		return nil, e
	}
	r := &chatRequest{}
	f.common(&r.genParams, true)
	f.boolean("logprobs", &r.Logprobs)
	if f.intIn("top_logprobs", 0, maxTopLogprobs, &r.TopLogprobs) && !r.Logprobs {
		f.fail(badRequest("top_logprobs", "top_logprobs requires logprobs: true"))
	}
	raw, ok := f.get("messages")
	if f.err == nil {
		if !ok {
			f.fail(badRequest("messages", "messages is required"))
		} else {
			r.Messages, e = decodeMessages(raw)
			f.fail(e)
		}
	}
	f.tools(r)
	f.responseFormat(&r.genParams)
	return r, f.finish(&r.genParams)
}

var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true}

// decodeMessages checks the messages array and returns it with key order
// kept; text parts of a list content are joined into one string, the form
// every chat template understands.
func decodeMessages(raw json.RawMessage) ([]chat.Message, *apiError) {
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, badRequest("messages", "messages must be an array of message objects, got %s", kind(raw))
	}
	switch {
	case len(items) == 0:
		return nil, badRequest("messages", "messages must not be empty")
	case len(items) > maxMessages:
		return nil, badRequest("messages", "messages has %d entries, more than the limit of %d", len(items), maxMessages)
	}
	msgs, err := chat.DecodeMessages(raw)
	if err != nil {
		return nil, badRequest("messages", "messages must be an array of message objects")
	}
	for i, it := range items {
		param := fmt.Sprintf("messages[%d]", i)
		var m map[string]json.RawMessage
		if it[0] != '{' || json.Unmarshal(it, &m) != nil {
			return nil, badRequest(param, "%s must be an object, got %s", param, kind(it))
		}
		var role string
		rr, ok := m["role"]
		if !ok || kind(rr) != "a string" || json.Unmarshal(rr, &role) != nil {
			return nil, badRequest(param+".role", "%s.role must be a string, got %s", param, kind(rr))
		}
		if !chatRoles[role] {
			return nil, badRequest(param+".role", "%s.role must be system, developer, user, assistant or tool, got %s", param, quoteName(role))
		}
		if e := checkToolCalls(param, role, m["tool_calls"]); e != nil {
			return nil, e
		}
		c, has := m["content"]
		switch {
		case !has || string(c) == "null":
			_, calls := m["tool_calls"]
			if role != "assistant" || !calls {
				return nil, badRequest(param+".content", "%s.content is required", param)
			}
		case c[0] == '"':
		case c[0] == '[':
			text, e := joinTextParts(param+".content", c)
			if e != nil {
				return nil, e
			}
			msgs[i].Set("content", text)
		default:
			return nil, badRequest(param+".content", "%s.content must be a string or an array of text parts, got %s", param, kind(c))
		}
	}
	return msgs, nil
}

func joinTextParts(param string, raw json.RawMessage) (string, *apiError) {
	var parts []json.RawMessage
	json.Unmarshal(raw, &parts)
	var b strings.Builder
	for j, p := range parts {
		pp := fmt.Sprintf("%s[%d]", param, j)
		var part struct {
			Type *string `json:"type"`
			Text *string `json:"text"`
		}
		if p[0] != '{' || json.Unmarshal(p, &part) != nil || part.Type == nil {
			return "", badRequest(pp, "%s must be an object with a string type", pp)
		}
		if *part.Type != "text" {
			return "", badRequest(pp+".type", "%s.type %s is not supported: this model reads text only", pp, quoteName(*part.Type))
		}
		if part.Text == nil {
			return "", badRequest(pp+".text", "%s.text must be a string", pp)
		}
		if j > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(*part.Text)
	}
	return b.String(), nil
}

// tools checks tools and tool_choice. Tools reach the chat template and
// the server parses tool calls out of the output (toolcalls.go); a
// tool_choice of "required" or a named function forces a call
// (forceToolCall).
func (f *fields) tools(r *chatRequest) {
	raw, hasTools := f.get("tools")
	var names []string
	if hasTools {
		var items []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			f.fail(badRequest("tools", "tools must be an array, got %s", kind(raw)))
			return
		}
		if len(items) == 0 {
			f.fail(badRequest("tools", "tools must not be empty; leave it out instead"))
			return
		}
		if len(items) > maxTools {
			f.fail(badRequest("tools", "tools has %d entries, more than the limit of %d", len(items), maxTools))
			return
		}
		for i, it := range items {
			var t struct {
				Type     *string `json:"type"`
				Function *struct {
					Name       *string         `json:"name"`
					Parameters json.RawMessage `json:"parameters"`
				} `json:"function"`
			}
			if it[0] != '{' || json.Unmarshal(it, &t) != nil || t.Type == nil || *t.Type != "function" || t.Function == nil || t.Function.Name == nil || *t.Function.Name == "" {
				f.fail(badRequest(fmt.Sprintf("tools[%d]", i), "tools[%d] must be {\"type\": \"function\", \"function\": {\"name\": ...}}", i))
				return
			}
			if p := t.Function.Parameters; len(p) > 0 && string(p) != "null" && p[0] != '{' {
				f.fail(badRequest(fmt.Sprintf("tools[%d].function.parameters", i), "tools[%d].function.parameters must be a JSON Schema object, got %s", i, kind(p)))
				return
			}
			names = append(names, *t.Function.Name)
			r.toolParams = append(r.toolParams, t.Function.Parameters)
		}
		r.toolNames = names
		v, err := chat.DecodeJSONOrdered(raw)
		if err != nil {
			f.fail(badRequest("tools", "tools is not valid JSON"))
			return
		}
		r.Tools, _ = v.([]any)
	}
	choice, ok := f.get("tool_choice")
	if !ok {
		return
	}
	if !hasTools {
		f.fail(badRequest("tool_choice", "tool_choice is only allowed together with tools"))
		return
	}
	var s string
	switch {
	case choice[0] == '"' && json.Unmarshal(choice, &s) == nil:
		switch s {
		case "auto":
		case "none":
			r.Tools = nil
		case "required":
			r.forced = &forcedTool{}
		default:
			f.fail(badRequest("tool_choice", "tool_choice must be \"auto\", \"none\", \"required\" or a named function, got %s", quoteName(s)))
		}
	case choice[0] == '{':
		var c struct {
			Function *struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(choice, &c) != nil || c.Function == nil {
			f.fail(badRequest("tool_choice", "tool_choice must name a function as {\"type\": \"function\", \"function\": {\"name\": ...}}"))
			return
		}
		for _, n := range names {
			if n == c.Function.Name {
				r.forced = &forcedTool{name: n}
				return
			}
		}
		f.fail(badRequest("tool_choice", "tool_choice names %s, which is not among the tools", quoteName(c.Function.Name)))
	default:
		f.fail(badRequest("tool_choice", "tool_choice must be a string or an object, got %s", kind(choice)))
	}
}

// decodeCompletionRequest decodes and checks a text completion request.
func decodeCompletionRequest(body []byte, vocab int) (*completionRequest, *apiError) {
	f, e := parseObject(body, vocab)
	if e != nil {
		return nil, e
	}
	r := &completionRequest{}
	f.common(&r.genParams, false)
	if r.MaxTokens == 0 && f.err == nil {
		r.MaxTokens = defaultMaxTokens
	}
	var lp int
	if f.intIn("logprobs", 0, maxTopLogprobs, &lp) {
		r.Logprobs, r.TopLogprobs = true, lp
	}
	var echo bool
	if f.boolean("echo", &echo) && echo {
		f.fail(badRequest("echo", "echo is not supported"))
	}
	var suffix string
	if f.str("suffix", &suffix) && suffix != "" {
		f.fail(badRequest("suffix", "suffix is not supported: this model has no fill-in-the-middle mode"))
	}
	f.responseFormat(&r.genParams)
	raw, ok := f.get("prompt")
	if f.err == nil {
		if !ok {
			f.fail(badRequest("prompt", "prompt is required"))
		} else {
			f.fail(decodePrompt(raw, vocab, r, true))
		}
	}
	return r, f.finish(&r.genParams)
}

// decodePrompt accepts a string, an array of token ids, or an array of
// one string or one array of ids (several prompts would need several
// choices). outer is false inside that one-element array.
func decodePrompt(raw json.RawMessage, vocab int, r *completionRequest, outer bool) *apiError {
	if raw[0] == '"' {
		json.Unmarshal(raw, &r.PromptText)
		return nil
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return badRequest("prompt", "prompt must be a string, an array of token ids, or an array of one of those; got %s", kind(raw))
	}
	if len(items) == 0 {
		return badRequest("prompt", "prompt must not be an empty array")
	}
	switch items[0][0] {
	case '"', '[':
		if !outer {
			return badRequest("prompt", "prompt must be a string, an array of token ids, or an array of one of those")
		}
		if len(items) > 1 {
			return badRequest("prompt", "prompt holds %d prompts; this server takes one per request", len(items))
		}
		return decodePrompt(items[0], vocab, r, false)
	}
	ids := make([]int, len(items))
	for i, it := range items {
		id, e := parseInt("prompt", it)
		if e != nil {
			return badRequest("prompt", "prompt token %d must be an integer token id, got %s", i, show(it))
		}
		if id < 0 || id >= int64(vocab) {
			return badRequest("prompt", "prompt token %d is %d, outside the vocabulary [0, %d)", i, id, vocab)
		}
		ids[i] = int(id)
	}
	r.PromptIDs, r.IsIDs = ids, true
	return nil
}

// checkToolCalls checks a message's tool_calls: absent or null, or (for
// an assistant) an array of {"type": "function", "function": {"name":
// string, "arguments": string or object}} objects.
func checkToolCalls(param, role string, raw json.RawMessage) *apiError {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	param += ".tool_calls"
	if role != "assistant" {
		return badRequest(param, "%s is only allowed in an assistant message", param)
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return badRequest(param, "%s must be an array of tool calls, got %s", param, kind(raw))
	}
	for j, it := range items {
		p := fmt.Sprintf("%s[%d]", param, j)
		var c struct {
			Type     *string `json:"type"`
			Function *struct {
				Name      *string         `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"function"`
		}
		if it[0] != '{' || json.Unmarshal(it, &c) != nil || c.Function == nil || c.Function.Name == nil {
			return badRequest(p, "%s must be {\"type\": \"function\", \"function\": {\"name\": ..., \"arguments\": ...}}", p)
		}
		if c.Type != nil && *c.Type != "function" {
			return badRequest(p+".type", "%s.type must be \"function\", got %s", p, quoteName(*c.Type))
		}
		if a := c.Function.Arguments; len(a) > 0 && a[0] != '"' && a[0] != '{' {
			return badRequest(p+".function.arguments", "%s.function.arguments must be a JSON string or an object, got %s", p, kind(a))
		}
	}
	return nil
}
