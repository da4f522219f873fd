package server

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/textgen"
	"github.com/jamba-go/jamba/tokenizer"
)

const fuzzVocab = 4096

var requestSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"}]}],"max_tokens":5,"temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.1,"seed":-3,"stop":["x","y"],"logprobs":true,"top_logprobs":3,"stream":true,"stream_options":{"include_usage":true}}`,
	`{"messages":[{"role":"assistant","content":null,"tool_calls":[]}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}`,
	`{"messages":[{"role":"user","content":"x"}],"logit_bias":{"5":100,"7":-1e3},"stop_token_ids":[2],"min_tokens":1,"ignore_eos":true}`,
	`{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"text"},"n":1,"max_completion_tokens":3}`,
	`{"prompt":"","max_tokens":1}`,
	`{"prompt":[1,2,3],"logprobs":2,"echo":false,"suffix":null,"best_of":1}`,
	`{"prompt":[[1,2]],"stop":"a"}`,
	`{"prompt":["text"],"presence_penalty":-2,"frequency_penalty":2,"repetition_penalty":1.5}`,
	`{"messages":[{"role":"user","content":"a\ud800"}],"max_tokens":1e309}`,
	`{"messages":[{"role":"user","content":"x"}],"n":3,"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object","properties":{"a":{"type":"string"}}},"strict":true}}}`,
	`{"prompt":"x","n":2,"best_of":2,"response_format":{"type":"json_object"}}`,
	`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
	`{"a":1,"a":2}`,
	`[]`, `{`, `{"messages":[{}]}`, `{"prompt":[4096]}`, ``,
}

// checkDecoded checks the invariants of a decoded request: an error is a
// 4xx naming a problem; a request has every value in range.
func checkDecoded(t *testing.T, g *genParams, e *apiError) bool {
	t.Helper()
	if e != nil {
		if e.status < 400 || e.status > 499 || e.Type == "" || e.Message == "" {
			t.Fatalf("bad error %+v", e)
		}
		return false
	}
	p := g.Sampling
	if err := p.Validate(); err != nil {
		t.Fatalf("accepted sampling parameters fail validation: %v", err)
	}
	if g.MaxTokens < 0 || g.MinTokens < 0 || g.TopLogprobs < 0 || g.TopLogprobs > maxTopLogprobs {
		t.Fatalf("lengths out of range: %+v", g)
	}
	if g.TopLogprobs > 0 && !g.Logprobs {
		t.Fatalf("top logprobs without logprobs: %+v", g)
	}
	if g.IncludeUsage && !g.Stream {
		t.Fatalf("include_usage without stream")
	}
	if len(g.Stop) > maxStops {
		t.Fatalf("%d stops", len(g.Stop))
	}
	for _, s := range g.Stop {
		if s == "" || len(s) > maxStopBytes {
			t.Fatalf("stop %q", s)
		}
	}
	for id, b := range g.LogitBias {
		if id < 0 || id >= fuzzVocab || b < -logitBiasLimit || b > logitBiasLimit {
			t.Fatalf("logit bias %d: %v", id, b)
		}
	}
	if g.N < 1 || g.N > maxChoices {
		t.Fatalf("n = %d", g.N)
	}
	if f := g.format; f != nil && f.Type != "json_object" && f.Type != "json_schema" {
		t.Fatalf("response_format type %q", f.Type)
	}
	for _, id := range g.StopTokenIDs {
		if id < 0 || id >= fuzzVocab {
			t.Fatalf("stop token %d", id)
		}
	}
	return true
}

func FuzzDecodeChatRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	tmpl := chat.Default()
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := decodeChatRequest(body, fuzzVocab)
		if e != nil {
			checkDecoded(t, nil, e)
			return
		}
		if !checkDecoded(t, &r.genParams, e) {
			return
		}
		if len(r.Messages) == 0 || len(r.Messages) > maxMessages {
			t.Fatalf("%d messages accepted", len(r.Messages))
		}
		// Rendering may refuse, never panic.
		tmpl.Render(chat.Input{Messages: r.Messages, Tools: r.Tools, AddGenerationPrompt: true})
	})
}

func FuzzDecodeCompletionRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := decodeCompletionRequest(body, fuzzVocab)
		if e != nil {
			checkDecoded(t, nil, e)
			return
		}
		if !checkDecoded(t, &r.genParams, e) {
			return
		}
		if r.MaxTokens < 1 {
			t.Fatalf("max tokens %d", r.MaxTokens)
		}
		if r.IsIDs {
			if len(r.PromptIDs) == 0 {
				t.Fatal("empty id prompt accepted")
			}
			for _, id := range r.PromptIDs {
				if id < 0 || id >= fuzzVocab {
					t.Fatalf("prompt id %d accepted", id)
				}
			}
		}
	})
}

// splitAt cuts text into pieces at the offsets cuts give (each byte of
// cuts is the length of the next piece, 0 meaning 1).
func splitAt(text string, cuts []byte) []string {
	var parts []string
	for i := 0; len(text) > 0; i++ {
		n := len(text)
		if i < len(cuts) {
			n = min(n, int(cuts[i])%16+1)
		}
		parts = append(parts, text[:n])
		text = text[n:]
	}
	return parts
}

// FuzzTextStream feeds token ids one at a time through the text pipeline
// (the tokenizer's stream decoder primed with a prompt, then the stop
// matcher) and checks that the streamed text equals the non-streamed
// one: Decode(prompt+generated) after Decode(prompt), cut at the first
// stop string. Ids of multi-byte characters split across tokens exercise
// the UTF-8 hold-back.
func FuzzTextStream(f *testing.F) {
	f.Add(uint8(0), []byte{0x03, 0x5b, 0x01, 0x20, 0x0f, 0xff}, "")
	f.Add(uint8(1), []byte("func main() { fmt.Println(\"héllo, 世界\") }"), "ln")
	f.Add(uint8(2), []byte{0xe4, 0xb8, 0x96, 0xe7, 0x95, 0x8c}, "\n")
	_, tok := loadDemo(f)
	prompts := []string{"", "func main() {", "// 世界", " x"}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte, stop string) {
		prompt := tok.Encode(prompts[int(which)%len(prompts)], true)
		// Two bytes per id; a byte alone maps to a low id.
		var ids []int
		for i := 0; i < len(raw) && len(ids) < 64; i += 2 {
			id := int(raw[i])
			if i+1 < len(raw) {
				id = id<<8 | int(raw[i+1])
			}
			ids = append(ids, id%fuzzVocab)
		}
		var stops []string
		if stop != "" && len(stop) <= maxStopBytes && utf8.ValidString(stop) {
			stops = []string{stop}
		}
		full := tok.Decode(append(append([]int(nil), prompt...), ids...), true)
		base := tok.Decode(prompt, true)
		if !strings.HasPrefix(full, base) {
			return // no continuation to compare with
		}
		want, wantStop := textgen.CutAtStop(full[len(base):], stops)

		ts := newTextStream(tok, prompt, stops)
		var out strings.Builder
		stopped := false
		for _, id := range ids {
			s, st := ts.add(id)
			out.WriteString(s)
			if st {
				stopped = true
				break
			}
		}
		if !stopped {
			s, st := ts.finish()
			out.WriteString(s)
			stopped = st
		}
		if out.String() != want || stopped != wantStop {
			t.Fatalf("prompt %v ids %v stops %q: streamed %q (%v), want %q (%v)", prompt, ids, stops, out.String(), stopped, want, wantStop)
		}
	})
}

// TestCompletionKeepsLeadingSpace checks the rule that a completion is
// the prompt's continuation as decoded in context: the space that starts
// the first generated token stays.
func TestCompletionKeepsLeadingSpace(t *testing.T) {
	_, tok := loadDemo(t)
	full := tok.Encode("x := 42", true)
	prompt := tok.Encode("x :=", true)
	if len(full) <= len(prompt) || !slices.Equal(full[:len(prompt)], prompt) {
		t.Fatalf("%v does not extend %v", full, prompt)
	}
	gen := full[len(prompt):]
	ts := newTextStream(tok, prompt, nil)
	var out strings.Builder
	for _, id := range gen {
		s, _ := ts.add(id)
		out.WriteString(s)
	}
	s, _ := ts.finish()
	out.WriteString(s)
	if out.String() != " 42" {
		t.Errorf("got %q, want %q (the generated ids alone decode to %q)", out.String(), " 42", tok.Decode(gen, true))
	}
}

// TestCompletionKeepsLeadingSpaceMetaspace uses the Llama 2 tokenizer,
// whose Metaspace decoder drops the space that starts a sequence: decoded
// alone, " world" would lose it.
func TestCompletionKeepsLeadingSpaceMetaspace(t *testing.T) {
	tok, err := tokenizer.Load(filepath.Join(testutil.Fixture(t, "tokenizers/llama2"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	full := tok.Encode("Hello world", true)
	prompt := tok.Encode("Hello", true)
	if len(full) <= len(prompt) || !slices.Equal(full[:len(prompt)], prompt) {
		t.Fatalf("%v does not extend %v", full, prompt)
	}
	gen := full[len(prompt):]
	ts := newTextStream(tok, prompt, nil)
	var out strings.Builder
	for _, id := range gen {
		s, _ := ts.add(id)
		out.WriteString(s)
	}
	s, _ := ts.finish()
	out.WriteString(s)
	if alone := tok.Decode(gen, true); alone != "world" {
		t.Fatalf("the test needs a decoder that strips: %v decodes to %q alone", gen, alone)
	}
	if out.String() != " world" {
		t.Errorf("got %q, want %q", out.String(), " world")
	}
}
