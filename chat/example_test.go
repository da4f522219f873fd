package chat_test

import (
	"fmt"

	"github.com/jamba-go/jamba/chat"
)

// Render a conversation with a chat template, as transformers'
// apply_chat_template does. chat.FromTokenizerConfig reads a model's
// template from its tokenizer_config.json.
func Example() {
	tmpl, err := chat.New(`{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}` +
		`{% if add_generation_prompt %}<|assistant|>{% endif %}`)
	if err != nil {
		panic(err)
	}
	text, err := tmpl.Render(chat.Input{
		Messages: []chat.Message{
			chat.NewMessage("system", "Answer in Go."),
			chat.NewMessage("user", "Sum a slice."),
		},
		AddGenerationPrompt: true,
		EOS:                 "</s>",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(text)
	// Output:
	// <|system|>Answer in Go.</s><|user|>Sum a slice.</s><|assistant|>
}
