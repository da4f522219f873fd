package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/tokenizer"
)

// A prompt's memory is spent before the context check: the text is
// decoded, rendered and tokenized whole. Two bounds keep a flood of huge
// prompts from growing the server without limit:
//
//   - by bytes, before any tokenizing: no token of the vocabulary stands
//     for more bytes than its longest entry (or 4, a UTF-8 character as
//     an unknown token), so a prompt longer than the context times that
//     cannot fit. The bound is doubled, as normalizers may shrink text
//     (NFC composes "e" + U+0301 into "é": 3 bytes into 2);
//   - by count: reading, decoding, rendering and tokenizing a request
//     hold one of as many places as the engine has slots; requests wait
//     for one unread, and when as many wait as the engine's queue holds,
//     the next is answered 429 at once.

// maxTokenBytes is the most bytes of text one token of tok stands for.
func maxTokenBytes(tok *tokenizer.Tokenizer) int {
	n := 4
	for id := range tok.VocabSize() {
		if s, ok := tok.IDToToken(id); ok {
			n = max(n, len(s))
		}
	}
	return n
}

// promptByteLimit is the most prompt bytes that may fit the context.
func (b *Backend) promptByteLimit() int64 {
	return 2 * int64(b.Engine.Config().Context) * int64(b.maxTokBytes)
}

// checkPromptBytes refuses a prompt of n bytes that cannot fit the context.
func (b *Backend) checkPromptBytes(n int64, param string) *apiError {
	if limit := b.promptByteLimit(); n > limit {
		return badRequest(param, "the %s has %d bytes of text, more than the %d that can fit this model's context length of %d tokens (at most %d bytes per token, doubled)",
			param, n, limit, b.Engine.Config().Context, b.maxTokBytes).withCode("context_length_exceeded")
	}
	return nil
}

// textBytes is the bytes of the strings inside a decoded JSON value
// (message contents, tool definitions): what a template renders.
func textBytes(v any) int64 {
	switch v := v.(type) {
	case string:
		return int64(len(v))
	case chat.Object:
		var n int64
		for _, m := range v {
			n += int64(len(m.Key)) + textBytes(m.Value)
		}
		return n
	case []chat.Object:
		var n int64
		for _, o := range v {
			n += textBytes(o)
		}
		return n
	case []any:
		var n int64
		for _, x := range v {
			n += textBytes(x)
		}
		return n
	case map[string]any:
		var n int64
		for k, x := range v {
			n += int64(len(k)) + textBytes(x)
		}
		return n
	}
	return 8 // a number, a boolean or null renders in a few bytes
}

// admitPrompt takes one of the places for prompt work (reading the body,
// decoding, rendering, tokenizing): as many as the engine has slots. A
// request waits for one, unread, as it would in the engine's queue; when
// as many wait as that queue holds, it is answered 429.
func (s *Server) admitPrompt(ctx context.Context, b *Backend) (release func(), e *apiError) {
	select {
	case b.promptSem <- struct{}{}:
		return func() { <-b.promptSem }, nil
	default:
	}
	queue := int64(b.Engine.Config().MaxQueue)
	if b.promptWait.Add(1) > queue {
		b.promptWait.Add(-1)
		return nil, &apiError{status: http.StatusTooManyRequests, Type: typeRateLimit, retryAfter: time.Second,
			Message: fmt.Sprintf("the server is busy: %d requests are being prepared and %d more wait; retry later", cap(b.promptSem), queue)}
	}
	defer b.promptWait.Add(-1)
	select {
	case b.promptSem <- struct{}{}:
		return func() { <-b.promptSem }, nil
	case <-ctx.Done():
		return nil, &apiError{status: http.StatusServiceUnavailable, Type: typeServer, Message: "the request ended while waiting to be read"}
	}
}

// bodyLimit is the largest request body that may hold a prompt that fits
// the context: the prompt's text bound three times over (JSON escapes
// such as \ud83d\ude00 for a 4-byte emoji), token ids written in up to 8
// bytes each, a logit_bias entry for every vocabulary id, a
// response_format schema, and 64 KiB for the other fields.
func (b *Backend) bodyLimit() int64 {
	ctx := int64(b.Engine.Config().Context)
	return 3*b.promptByteLimit() + 8*ctx + 24*int64(b.Engine.VocabSize()) + maxSchemaBytes + 64<<10
}

func (b *Backend) bodyTooLarge(n, limit int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: ptr("context_length_exceeded"),
		Message: fmt.Sprintf("the request body has %d bytes, more than the %d that a request fitting this model's context length of %d tokens needs", n, limit, b.Engine.Config().Context)}
}

// logAddExp is log(exp(a) + exp(b)) without overflow.
func logAddExp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}
