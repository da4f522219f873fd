package chat

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReferenceConversations renders every conversation of the reference
// files, made with transformers' apply_chat_template, and compares bytes.
func TestReferenceConversations(t *testing.T) {
	for _, tc := range []struct{ name, bos, eos string }{
		{"jamba-1.7", "<|startoftext|>", "<|endoftext|>"},
		{"qwen3", "", "<|im_end|>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "chat")
			src, err := os.ReadFile(filepath.Join(dir, tc.name+"-chat-template.jinja"))
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := New(string(src))
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, tc.name+"-reference.json"))
			if err != nil {
				t.Fatal(err)
			}
			v, err := DecodeJSONOrdered(data)
			if err != nil {
				t.Fatal(err)
			}
			cases := v.([]any)
			if len(cases) == 0 {
				t.Fatal("no conversations")
			}
			for _, c := range cases {
				conv := c.(Object)
				name, _ := conv.Get("name")
				t.Run(name.(string), func(t *testing.T) {
					in := Input{BOS: tc.bos, EOS: tc.eos}
					raw, _ := conv.Get("messages")
					for _, m := range raw.([]any) {
						in.Messages = append(in.Messages, m.(Object))
					}
					if tools, ok := conv.Get("tools"); ok && tools != nil {
						in.Tools = tools.([]any)
					}
					if docs, ok := conv.Get("documents"); ok && docs != nil {
						in.Documents = docs.([]any)
					}
					if agp, ok := conv.Get("add_generation_prompt"); ok {
						in.AddGenerationPrompt = agp.(bool)
					}
					got, err := tmpl.Render(in)
					if err != nil {
						t.Fatal(err)
					}
					want, _ := conv.Get("rendered")
					if got != want.(string) {
						t.Errorf("rendered\n%q\nwant\n%q", got, want)
					}
				})
			}
		})
	}
}
