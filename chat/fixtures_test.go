package chat

import (
	"testing"
)

// TestReferenceConversations renders every conversation of the reference
// files, made with transformers' apply_chat_template, and compares bytes.
func TestReferenceConversations(t *testing.T) {
	for name, ref := range referenceTemplates(t) {
		t.Run(name, func(t *testing.T) {
			if len(ref.convs) == 0 {
				t.Fatal("no conversations")
			}
			for _, c := range ref.convs {
				t.Run(c.name, func(t *testing.T) {
					got, err := ref.tmpl.Render(c.in)
					if err != nil {
						t.Fatal(err)
					}
					if got != c.want {
						t.Errorf("rendered\n%q\nwant\n%q", got, c.want)
					}
				})
			}
		})
	}
}
