package server

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/jamba-go/jamba/textgen"
)

// Tool calls in chat output.
//
// A chat template that renders assistant tool calls shows the markup the
// model was trained to write; the server parses the same markup out of
// the generated text. The format is chosen from the template's source:
//
//   - it contains "<tool_calls>" (Jamba 1.7): <tool_calls>, a JSON array
//     of {"name", "arguments"} objects, </tool_calls>;
//   - otherwise it contains "<tool_call>" (Qwen3, Hermes): one or more
//     <tool_call>, one {"name", "arguments"} object, </tool_call> blocks;
//   - otherwise tool calls are not parsed.
//
// Both formats take either a single call object or a non-empty array of
// them inside one block, and several blocks separated by white space. A
// call object has a non-empty string "name" and "arguments" that is a
// JSON object, a string holding a JSON object, null or absent ({}); no
// other member. The markup starts at the first opening marker and must
// run, blocks and white space only, to the end of the output; anything
// else (bad JSON, another shape, text after it, a block cut off by
// max_tokens or a stop string) leaves the whole output as content.

// toolFormat is the tool-call markup of a chat template.
type toolFormat struct {
	name        string
	open, close string
}

var (
	jambaToolFormat  = &toolFormat{name: "jamba", open: "<tool_calls>", close: "</tool_calls>"}
	hermesToolFormat = &toolFormat{name: "hermes", open: "<tool_call>", close: "</tool_call>"}
)

// toolFormatOf returns the tool-call format of a template's source, or
// nil when it shows none.
func toolFormatOf(source string) *toolFormat {
	switch {
	case strings.Contains(source, jambaToolFormat.open):
		return jambaToolFormat
	case strings.Contains(source, hermesToolFormat.open):
		return hermesToolFormat
	}
	return nil
}

// toolCall is a call as the API reports it.
type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name string `json:"name"`
	// Arguments is JSON text (an object), as OpenAI sends it.
	Arguments string `json:"arguments"`
}

// toolCallDelta is a call in a streamed chunk: all of it at once.
type toolCallDelta struct {
	Index int `json:"index"`
	toolCall
}

// isWS reports JSON white space, the only white space the parser skips
// or trims. ASCII only, so the result does not depend on where the text
// was cut.
func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func trimLeftWS(s string) string {
	i := 0
	for i < len(s) && isWS(s[i]) {
		i++
	}
	return s[i:]
}

func trimRightWS(s string) string {
	i := len(s)
	for i > 0 && isWS(s[i-1]) {
		i--
	}
	return s[:i]
}

// parseMarkup parses what follows the first opening marker: blocks to the
// end of the text. ok is false unless all of it is well-formed calls.
func (f *toolFormat) parseMarkup(s string) (calls []toolCall, ok bool) {
	for {
		dec := json.NewDecoder(strings.NewReader(s))
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return nil, false
		}
		got, ok := parseCalls(raw)
		if !ok {
			return nil, false
		}
		calls = append(calls, got...)
		s = trimLeftWS(s[dec.InputOffset():])
		if !strings.HasPrefix(s, f.close) {
			return nil, false
		}
		s = trimLeftWS(s[len(f.close):])
		if s == "" {
			return calls, true
		}
		if !strings.HasPrefix(s, f.open) {
			return nil, false
		}
		s = s[len(f.open):]
	}
}

// parseCalls reads one block's JSON: a call object or a non-empty array
// of them.
func parseCalls(raw json.RawMessage) ([]toolCall, bool) {
	if raw[0] == '{' {
		c, ok := parseCall(raw)
		return []toolCall{c}, ok
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return nil, false
	}
	calls := make([]toolCall, len(items))
	for i, it := range items {
		var ok bool
		if calls[i], ok = parseCall(it); !ok {
			return nil, false
		}
	}
	return calls, true
}

func parseCall(raw json.RawMessage) (toolCall, bool) {
	var m map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		return toolCall{}, false
	}
	var name string
	n, ok := m["name"]
	if !ok || n[0] != '"' || json.Unmarshal(n, &name) != nil || name == "" {
		return toolCall{}, false
	}
	args := "{}"
	if a, has := m["arguments"]; has {
		switch a[0] {
		case '{':
			var b bytes.Buffer
			if json.Compact(&b, a) != nil {
				return toolCall{}, false
			}
			args = b.String()
		case '"':
			var s string
			json.Unmarshal(a, &s)
			var b bytes.Buffer
			if s = trimRightWS(trimLeftWS(s)); s == "" || s[0] != '{' || json.Compact(&b, []byte(s)) != nil {
				return toolCall{}, false
			}
			args = b.String()
		case 'n': // null
		default:
			return toolCall{}, false
		}
	}
	for k := range m {
		if k != "name" && k != "arguments" {
			return toolCall{}, false
		}
	}
	return toolCall{Type: "function", Function: toolFunction{Name: name, Arguments: args}}, true
}

// toolStream separates content from tool-call markup in text that arrives
// in pieces. Text is released as content until the opening marker; a
// suffix that may be the start of the marker is held back (the stop-string
// matcher does this), and so is trailing white space, which is dropped if
// the markup that follows parses. From the marker on everything is held
// until the end: then the calls are parsed, or, if the markup is not
// well-formed, the held text is released as content. The result does not
// depend on how the text was cut.
type toolStream struct {
	f      *toolFormat
	m      textgen.StopMatcher
	ws     string // trailing white space held back
	in     bool   // the opening marker was seen
	markup strings.Builder
	calls  []toolCall
}

func newToolStream(f *toolFormat) *toolStream {
	return &toolStream{f: f, m: textgen.StopMatcher{Stops: []string{f.open}}}
}

// push adds text and returns the content it releases.
func (t *toolStream) push(s string) string {
	if t.in {
		t.markup.WriteString(s)
		return ""
	}
	out, rest, found := t.m.Scan(s)
	out = t.ws + out
	body := trimRightWS(out)
	t.ws = out[len(body):]
	if found {
		t.in = true
		t.markup.WriteString(rest)
	}
	return body
}

// finish returns the content still held back once no more text will
// come; the calls, if any, are in t.calls.
func (t *toolStream) finish() string {
	if !t.in {
		s := t.ws + t.m.Flush()
		t.ws = ""
		return s
	}
	calls, ok := t.f.parseMarkup(t.markup.String())
	if ok {
		t.calls = calls
		return ""
	}
	return t.ws + t.f.open + t.markup.String()
}

// parseToolCalls splits a whole output into content and calls, as the
// stream does; calls is nil when the output holds no well-formed markup
// (content is then all of it).
func parseToolCalls(f *toolFormat, text string) (content string, calls []toolCall) {
	t := newToolStream(f)
	content = t.push(text)
	content += t.finish()
	return content, t.calls
}
