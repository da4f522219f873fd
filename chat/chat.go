// Package chat renders the chat templates that Hugging Face models ship in
// tokenizer_config.json, producing the same text as transformers'
// apply_chat_template.
//
// Templates are Jinja. They run on github.com/ardanlabs/jinja with the
// environment Hugging Face sets up: trim_blocks and lstrip_blocks, the
// loop controls, and the globals raise_exception and strftime_now and the
// tojson filter (json.dumps with ensure_ascii=False, keys in insertion
// order, indent, separators and sort_keys). On top of the engine this
// package adds what chat templates use and the engine lacks or gets wrong:
// star arguments in calls (f(*args, **kwargs)), Python str methods
// (split with maxsplit, rsplit, splitlines, startswith with a tuple,
// strip with Python's idea of whitespace, title, removeprefix, isdigit
// and friends, list.index and list.count), and Jinja's title, string and
// list filters.
//
// Python dicts keep insertion order and templates show it (tojson, items()),
// so values should come in as [Object], which [DecodeJSONOrdered] and
// [DecodeMessages] produce from JSON. A map[string]any is accepted too, with
// its keys sorted.
//
// [Template.RenderSpans] also reports where the conversation's strings
// ended up in the output, so that a tokenizer can read control-token text
// inside a message as plain text while the template's own markup becomes
// special tokens.
//
// Known differences from Python Jinja: printing None gives the empty string
// rather than "None" (use |string to get "None"); floats print as Go's %g
// outside tojson and |string; the tests divisibleby, escaped, filter and
// test are missing; macros cannot take varargs or kwargs; integers beyond
// int64 become floats.
package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ardanlabs/jinja"

	"github.com/jamba-go/jamba/internal/safefile"
)

// Message is one chat message, such as {"role": "user", "content": "Hi"}:
// an [Object], so key order is kept. Values are what JSON decodes to:
// content may be a string or a list of parts, tool_calls a list of
// objects, and any other field (name, tool_call_id, reasoning_content...)
// is passed to the template as it is. Build one by hand with
// [NewMessage] or as a literal:
//
//	chat.Message{{"role", "user"}, {"content", "Hi"}}
type Message = Object

// NewMessage returns a message with a role and a text content.
func NewMessage(role, content string) Message {
	return Message{{Key: "role", Value: role}, {Key: "content", Value: content}}
}

// Input is what a template is rendered with, the arguments of
// apply_chat_template.
type Input struct {
	// Messages is the conversation.
	Messages []Message
	// Tools are the tool (function) definitions, usually [Object] values
	// in OpenAI form. Nil makes the template see tools = none.
	Tools []any
	// Documents are retrieval documents, usually [Object] values with
	// title and text. Nil makes the template see documents = none.
	Documents []any
	// AddGenerationPrompt asks the template to end with the header of an
	// assistant turn.
	AddGenerationPrompt bool
	// BOS and EOS are the tokenizer's bos_token and eos_token. An empty
	// one is left undefined, as for a tokenizer without that token.
	BOS, EOS string
	// Extra holds more template variables, such as other special tokens
	// (unk_token, pad_token) or switches like enable_thinking. It may
	// override bos_token and eos_token but not the fields above.
	Extra map[string]any
	// Now is the time strftime_now reports; the zero value means the
	// current local time.
	Now time.Time
}

// Template is a compiled chat template. It is safe for concurrent use.
type Template struct {
	source string
	tmpl   *jinja.Template
}

// New compiles a chat template. Syntax errors name the line.
func New(source string) (*Template, error) {
	t, err := jinja.Compile(rewriteSource(source))
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &Template{source: source, tmpl: t}, nil
}

// Source returns the template text as given to [New].
func (t *Template) Source() string { return t.source }

// Render renders the template for in. An error raised by the template
// through raise_exception is a *[TemplateError].
func (t *Template) Render(in Input) (string, error) {
	data := make(map[string]jinja.Value, 16)
	for name, f := range filters {
		data[filterPrefix+name] = jinja.NewCallable(name, f)
	}
	for name, f := range methods {
		data[methodPrefix+name] = jinja.NewCallable(name, f)
	}
	data[callName] = jinja.NewCallable("call", callStar)
	data[starName] = jinja.NewCallable("*", starMarker("*"))
	data[kwstarName] = jinja.NewCallable("**", starMarker("**"))
	data["raise_exception"] = jinja.NewCallable("raise_exception", raiseException)
	now := in.Now
	data["strftime_now"] = jinja.NewCallable("strftime_now", func(a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		f := arg(a, 0)
		if !f.IsString() {
			return jinja.Undefined(), fmt.Errorf("strftime_now: format must be a string")
		}
		if now.IsZero() {
			now = time.Now()
		}
		return jinja.NewString(strftime(now, f.AsString())), nil
	})

	if in.BOS != "" {
		data["bos_token"] = jinja.NewString(in.BOS)
	}
	if in.EOS != "" {
		data["eos_token"] = jinja.NewString(in.EOS)
	}
	for k, v := range in.Extra {
		val, err := toValue(v)
		if err != nil {
			return "", fmt.Errorf("chat: variable %s: %w", k, err)
		}
		data[k] = val
	}

	msgs := make([]jinja.Value, len(in.Messages))
	for i, m := range in.Messages {
		v, err := toValue(m)
		if err != nil {
			return "", fmt.Errorf("chat: messages[%d]: %w", i, err)
		}
		msgs[i] = v
	}
	data["messages"] = jinja.NewList(msgs)
	for name, list := range map[string][]any{"tools": in.Tools, "documents": in.Documents} {
		if list == nil {
			data[name] = jinja.None()
			continue
		}
		v, err := toValue(list)
		if err != nil {
			return "", fmt.Errorf("chat: %s: %w", name, err)
		}
		data[name] = v
	}
	data["add_generation_prompt"] = jinja.NewBool(in.AddGenerationPrompt)

	out, err := t.tmpl.RenderValues(data)
	if err != nil {
		var te *TemplateError
		if errors.As(err, &te) {
			return "", err
		}
		return "", fmt.Errorf("chat template: %w", err)
	}
	return out, nil
}

// defaultSource is the template of [Default].
const defaultSource = `{%- for message in messages -%}
{{ message.role }}: {% if message.content is string %}{{ message.content }}{% else %}{% for part in message.content %}{% if part.type == "text" %}{{ part.text }}{% endif %}{% endfor %}{% endif %}{{ "\n\n" }}
{%- endfor -%}
{% if add_generation_prompt %}assistant:{% endif %}`

// Default returns the template to use for a model without one: a plain
// transcript with one "role: content" block per message, blocks separated
// by a blank line, the text parts of list contents joined, and, with
// AddGenerationPrompt, a final "assistant:". For example:
//
//	system: Be brief.
//
//	user: Hi
//
//	assistant:
//
// No special tokens are added.
func Default() *Template {
	t, err := New(defaultSource)
	if err != nil {
		panic(err)
	}
	return t
}

// ErrNoTemplate is returned by [FromTokenizerConfig] when the model has no
// chat template; callers can fall back to [Default].
var ErrNoTemplate = errors.New("chat: the model has no chat template")

// FromTokenizerConfig reads a tokenizer_config.json: its chat_template (a
// string, or a list of {name, template} from which it takes "default",
// or a chat_template.jinja file next to it, as newer transformers save it)
// and its special tokens (bos_token, eos_token, unk_token, pad_token,
// sep_token, cls_token, mask_token; each a string or an object with
// content), returned by name. Tokens that are null or absent are left
// out. When there is no template the tokens come back with
// [ErrNoTemplate].
func FromTokenizerConfig(path string) (*Template, map[string]string, error) {
	data, err := safefile.ReadFile(path, safefile.MaxConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("chat: %w", err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, nil, fmt.Errorf("chat: %s: %w", path, err)
	}
	tokens := map[string]string{}
	for _, name := range []string{"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"} {
		raw, ok := cfg[name]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			tokens[name] = s
			continue
		}
		var obj struct {
			Content *string `json:"content"`
		}
		if json.Unmarshal(raw, &obj) == nil && obj.Content != nil {
			tokens[name] = *obj.Content
			continue
		}
		return nil, nil, fmt.Errorf("chat: %s: %s is neither a string nor an object with content", path, name)
	}

	var source string
	raw, ok := cfg["chat_template"]
	switch {
	case ok && string(raw) != "null":
		if json.Unmarshal(raw, &source) != nil {
			var named []struct {
				Name     string `json:"name"`
				Template string `json:"template"`
			}
			if err := json.Unmarshal(raw, &named); err != nil {
				return nil, nil, fmt.Errorf("chat: %s: chat_template is neither a string nor a list of {name, template}", path)
			}
			found := false
			for _, n := range named {
				if n.Name == "default" {
					source, found = n.Template, true
					break
				}
			}
			if !found {
				return nil, nil, fmt.Errorf("chat: %s: chat_template list has no template named \"default\"", path)
			}
		}
	default:
		b, err := safefile.ReadFile(filepath.Join(filepath.Dir(path), "chat_template.jinja"), safefile.MaxConfig)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, tokens, ErrNoTemplate
			}
			return nil, nil, fmt.Errorf("chat: %w", err)
		}
		source = string(b)
	}
	t, err := New(source)
	if err != nil {
		return nil, nil, err
	}
	return t, tokens, nil
}
