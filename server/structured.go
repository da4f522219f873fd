package server

import (
	"container/list"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/structured"
)

// maxChoices bounds n; the engine's slot count bounds it further.
const maxChoices = 128

// maxSchemaBytes bounds the schema of response_format.
const maxSchemaBytes = 256 << 10

// bestOf refuses best_of: choosing the best of several samples by their
// log-probability is not offered (n returns every choice instead).
func (f *fields) bestOf() {
	var b int64
	if f.integer("best_of", &b) && b != 1 {
		f.fail(badRequest("best_of", "best_of is not supported (got %d): ask for n choices and pick among them", b))
	}
}

// responseFormat is a response_format that asks for JSON.
type responseFormat struct {
	// Type is "json_object", "json_schema", or "tool_call" (a forced tool
	// call: Schema between Prefix and Suffix).
	Type string
	// Schema is json_schema.schema; nil means any JSON value.
	Schema         []byte
	Prefix, Suffix string
	// key identifies the grammar in the cache.
	key [sha256.Size]byte
}

// responseFormat decodes response_format: {"type": "text"},
// {"type": "json_object"} or {"type": "json_schema", "json_schema":
// {"name": ..., "schema": {...}, "strict": ...}}.
func (f *fields) responseFormat(g *genParams) {
	raw, ok := f.get("response_format")
	if !ok {
		return
	}
	var rf struct {
		Type       *string                    `json:"type"`
		JSONSchema map[string]json.RawMessage `json:"json_schema"`
	}
	if raw[0] != '{' || json.Unmarshal(raw, &rf) != nil || rf.Type == nil {
		f.fail(badRequest("response_format", "response_format must be an object with a string type"))
		return
	}
	switch *rf.Type {
	case "text":
		if rf.JSONSchema != nil {
			f.fail(badRequest("response_format.json_schema", "response_format.json_schema is only allowed with type json_schema"))
		}
		return
	case "json_object":
		if rf.JSONSchema != nil {
			f.fail(badRequest("response_format.json_schema", "response_format.json_schema is only allowed with type json_schema"))
			return
		}
		g.format = &responseFormat{Type: "json_object"}
	case "json_schema":
		js := rf.JSONSchema
		if js == nil {
			f.fail(badRequest("response_format.json_schema", "response_format.json_schema is required with type json_schema"))
			return
		}
		if n, ok := js["name"]; ok && string(n) != "null" {
			var name string
			if json.Unmarshal(n, &name) != nil {
				f.fail(badRequest("response_format.json_schema.name", "response_format.json_schema.name must be a string"))
				return
			}
		}
		if st, ok := js["strict"]; ok && string(st) != "null" && string(st) != "true" && string(st) != "false" {
			f.fail(badRequest("response_format.json_schema.strict", "response_format.json_schema.strict must be a boolean"))
			return
		}
		rf := &responseFormat{Type: "json_schema"}
		if sc, ok := js["schema"]; ok && string(sc) != "null" {
			if sc[0] != '{' && string(sc) != "true" {
				f.fail(badRequest("response_format.json_schema.schema", "response_format.json_schema.schema must be an object"))
				return
			}
			if len(sc) > maxSchemaBytes {
				f.fail(badRequest("response_format.json_schema.schema", "response_format.json_schema.schema has %d bytes, more than the limit of %d", len(sc), maxSchemaBytes))
				return
			}
			rf.Schema = append([]byte(nil), sc...)
		}
		g.format = rf
	default:
		f.fail(badRequest("response_format.type", "response_format.type must be text, json_object or json_schema, got %s", quoteName(*rf.Type)))
		return
	}
	g.format.setKey()
}

func (rf *responseFormat) setKey() {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(rf.Type), []byte(rf.Prefix), []byte(rf.Suffix), rf.Schema} {
		h.Write([]byte{byte(len(part) >> 24), byte(len(part) >> 16), byte(len(part) >> 8), byte(len(part))})
		h.Write(part)
	}
	copy(rf.key[:], h.Sum(nil))
}

// forcedTool is a tool_choice that requires a call: of the named
// function, or of any tool ("required").
type forcedTool struct{ name string }

// forceToolCall makes the output of a chat request one tool call in the
// template's markup, with arguments valid under the tool's parameters
// (as a json_schema response_format would).
func forceToolCall(b *Backend, req *chatRequest) *apiError {
	g := &req.genParams
	switch {
	case g.format != nil:
		return badRequest("tool_choice", "tool_choice that requires a call cannot be combined with a JSON response_format")
	case b.tools == nil:
		return badRequest("tool_choice", "tool_choice %q cannot be honoured: the chat template shows no tool-call markup this server knows", "required")
	}
	value, e := toolCallSchema(b, req, req.forced.name, false)
	if e != nil {
		return e
	}
	g.format = &responseFormat{Type: "tool_call", Schema: []byte(value), Prefix: b.tools.open, Suffix: b.tools.close}
	g.format.setKey()
	return nil
}

// constrainToolCalls holds the tool calls a chat request with tools (and
// tool_choice "auto") may make to its tools' parameters: the output is
// free text, but after the template's opening marker only a call block
// (a tool's name and arguments valid under its parameters) may follow,
// and after it only more blocks. A tool whose parameters are outside the
// supported subset gets arguments that are any JSON object.
func constrainToolCalls(b *Backend, req *chatRequest) {
	// ignore_eos and min_tokens keep their meaning: the text is then
	// left free (a constraint ends the request at end-of-sequence).
	if b.tools == nil || req.format != nil || len(req.toolNames) == 0 || req.IgnoreEOS || req.MinTokens > 0 {
		return
	}
	value, _ := toolCallSchema(b, req, "", true)
	req.format = &responseFormat{Type: "tool_text", Schema: []byte(value), Prefix: b.tools.open, Suffix: b.tools.close}
	req.format.setKey()
}

// toolCallSchema is the JSON schema of a call block's JSON: a call of the
// named tool (or any), as a list in Jamba's format. lenient replaces
// parameters outside the supported subset by any object instead of
// refusing them.
func toolCallSchema(b *Backend, req *chatRequest, only string, lenient bool) (string, *apiError) {
	var calls []string
	for i, name := range req.toolNames {
		if only != "" && name != only {
			continue
		}
		params := []byte(`{"type":"object"}`)
		if p := req.toolParams[i]; len(p) > 0 && string(p) != "null" {
			if _, err := structured.Compile(p); err != nil && lenient {
				p = params
			} else if err != nil {
				param := fmt.Sprintf("tools[%d].function.parameters", i)
				var se *structured.SchemaError
				if errors.As(err, &se) && se.Path != "" {
					param += strings.ReplaceAll(se.Path, "/", ".")
				}
				e := badRequest(param, "tool_choice requires a call, so %s must be a supported schema: %v; docs/SERVER.md lists what is supported", param, err)
				if se != nil && se.Unsupported {
					e = e.withCode("unsupported_schema")
				}
				return "", e
			}
			params = p
		}
		nameJSON, _ := json.Marshal(name)
		calls = append(calls, fmt.Sprintf(`{"type":"object","properties":{"name":{"const":%s},"arguments":%s},"required":["name","arguments"],"additionalProperties":false}`, nameJSON, params))
	}
	value := calls[0]
	if len(calls) > 1 {
		value = `{"anyOf":[` + strings.Join(calls, ",") + `]}`
	}
	if b.tools == jambaToolFormat {
		// A list of calls; one when a function is named.
		value = `{"type":"array","items":` + value + `,"minItems":1`
		if only != "" {
			value += `,"maxItems":1`
		}
		value += "}"
	}
	return value, nil
}

// grammars holds a backend's vocabulary index and its compiled schemas,
// the most recently used first.
type grammars struct {
	once  sync.Once
	vocab *structured.Vocab

	mu    sync.Mutex
	order *list.List // of *grammarEntry
	byKey map[[sha256.Size]byte]*list.Element
}

type grammarEntry struct {
	key [sha256.Size]byte
	ix  *structured.Index
}

// maxGrammars is how many compiled schemas a backend keeps.
const maxGrammars = 32

func newGrammars() *grammars {
	return &grammars{order: list.New(), byKey: map[[sha256.Size]byte]*list.Element{}}
}

// vocabOf indexes the tokens of b once: each id's bytes, end-of-sequence
// ids apart.
func (gs *grammars) vocabOf(b *Backend) *structured.Vocab {
	gs.once.Do(func() {
		V := b.Engine.VocabSize()
		toks := make([][]byte, V)
		var eos []int
		for id := range V {
			if b.Engine.IsEOS(id) {
				eos = append(eos, id)
				continue
			}
			if t, ok := b.Tokenizer.TokenBytes(id); ok {
				toks[id] = t
			}
		}
		gs.vocab = structured.NewVocab(toks, eos)
	})
	return gs.vocab
}

// index returns the compiled grammar of rf, compiling it on first use.
func (gs *grammars) index(b *Backend, rf *responseFormat) (*structured.Index, error) {
	gs.mu.Lock()
	if el, ok := gs.byKey[rf.key]; ok {
		gs.order.MoveToFront(el)
		gs.mu.Unlock()
		return el.Value.(*grammarEntry).ix, nil
	}
	gs.mu.Unlock()
	var g *structured.Grammar
	switch {
	case rf.Type == "tool_call":
		var err error
		if g, err = structured.CompileWrapped(rf.Schema, rf.Prefix, rf.Suffix); err != nil {
			return nil, err
		}
	case rf.Type == "tool_text":
		var err error
		if g, err = structured.CompileAfterMarker(rf.Schema, rf.Prefix, rf.Suffix); err != nil {
			return nil, err
		}
	case rf.Type == "json_object":
		g = structured.AnyObject()
	case rf.Schema == nil:
		g = structured.AnyValue()
	default:
		var err error
		if g, err = structured.Compile(rf.Schema); err != nil {
			return nil, err
		}
	}
	ix := structured.NewIndex(g, gs.vocabOf(b))
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if el, ok := gs.byKey[rf.key]; ok { // compiled meanwhile
		return el.Value.(*grammarEntry).ix, nil
	}
	gs.byKey[rf.key] = gs.order.PushFront(&grammarEntry{key: rf.key, ix: ix})
	for gs.order.Len() > maxGrammars {
		old := gs.order.Back()
		gs.order.Remove(old)
		delete(gs.byKey, old.Value.(*grammarEntry).key)
	}
	return ix, nil
}

// constraints returns a maker of one constraint per choice for g's
// response_format, or nil when there is none; a schema that cannot be
// compiled is a 400 naming the keyword.
func (s *Server) constraints(b *Backend, g *genParams) (func() engine.Constraint, *apiError) {
	if g.format == nil {
		return nil, nil
	}
	ix, err := b.grammars.index(b, g.format)
	if err != nil && g.format.Type == "tool_text" {
		return nil, nil // tool calls left unconstrained rather than refusing a request that asked for nothing
	}
	if err != nil {
		param := "response_format.json_schema.schema"
		var se *structured.SchemaError
		if errors.As(err, &se) {
			if se.Path != "" {
				param += strings.ReplaceAll(se.Path, "/", ".")
			}
			if se.Unsupported {
				return nil, badRequest(param, "response_format: %v; docs/SERVER.md lists what is supported", err).withCode("unsupported_schema")
			}
		}
		return nil, badRequest(param, "response_format: %v", err)
	}
	return func() engine.Constraint { return ix.NewMatcher() }, nil
}
