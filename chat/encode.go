package chat

import "github.com/jamba-go/jamba/tokenizer"

// Encode renders in and encodes the text with tok so that only the
// template's own markup becomes added tokens: the text of an added token
// inside a message, a tool call or a tool definition is encoded as the plain
// text it is (tokenizer.Tokenizer.EncodeSpans over the places RenderSpans
// reports, with tok.FindAddedTokens choosing the strings to place). A
// conversation that holds no added token's text is rendered once and gives
// tok.Encode of Render's output. addSpecial is Encode's: whether the
// post-processor adds its tokens (for templates that do not write the BOS
// token themselves).
func (t *Template) Encode(tok *tokenizer.Tokenizer, in Input, addSpecial bool) ([]int, Rendered, error) {
	r, err := t.RenderSpans(in, func(s string) []Span {
		found := tok.FindAddedTokens(s)
		out := make([]Span, len(found))
		for i, f := range found {
			out[i] = Span(f)
		}
		return out
	})
	if err != nil {
		return nil, Rendered{}, err
	}
	spans := make([]tokenizer.Span, len(r.Spans))
	for i, s := range r.Spans {
		spans[i] = tokenizer.Span(s)
	}
	return tok.EncodeSpans(r.Text, addSpecial, spans), r, nil
}
