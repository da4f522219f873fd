package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// StreamDecoder turns ids arriving one at a time into text deltas. A delta
// never ends inside a UTF-8 character or inside a run of byte-fallback
// tokens, and the deltas followed by Flush concatenate to Decode of all the
// ids added. It is not safe for concurrent use.
//
// Decoders such as Metaspace and Strip drop the leading space of the first
// token of a sequence. To stream a continuation of a prompt (the text of
// Decode(prompt+generated) after Decode(prompt)), call Prime with the prompt
// ids first: they serve as context and are never emitted, so the leading
// space of the first generated token is kept.
type StreamDecoder struct {
	t    *Tokenizer
	skip bool

	ctx     []int  // context ids, already accounted for
	ctxText string // Decode(ctx)
	pending []int  // ids not yet emitted

	all     []int // every id added since Reset or Prime (after filtering)
	emitted strings.Builder
	primed  []int // the context given to Prime
}

// NewStreamDecoder returns a streaming decoder; skipSpecial drops special
// tokens as Decode does.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skip: skipSpecial}
}

// Reset forgets all ids and context.
func (d *StreamDecoder) Reset() {
	d.ctx, d.ctxText, d.pending, d.all, d.primed = nil, "", nil, nil, nil
	d.emitted.Reset()
}

// primeContext is how many trailing ids of a Prime context are kept.
const primeContext = 8

// Prime resets the decoder and feeds ids as context without emitting
// them. Later deltas are the text Decode(ids+added) has after Decode(ids).
// The context should end on a complete character, as the ids of Encode do.
func (d *StreamDecoder) Prime(ids []int) {
	d.Reset()
	var keep []int
	for _, id := range ids {
		if d.keep(id) {
			keep = append(keep, id)
		}
	}
	start := max(0, len(keep)-primeContext)
	for start > 0 && d.isByteToken(keep[start]) {
		start--
	}
	d.primed = keep[start:]
	d.ctx = append([]int(nil), d.primed...)
	d.ctxText = d.t.Decode(d.ctx, false)
}

func (d *StreamDecoder) keep(id int) bool {
	if _, ok := d.t.IDToToken(id); !ok {
		return false
	}
	return !(d.skip && d.t.IsSpecial(id))
}

func (d *StreamDecoder) isByteToken(id int) bool {
	if !d.t.byteFallbackDecode {
		return false
	}
	tok, _ := d.t.IDToToken(id)
	_, ok := byteToken(tok)
	return ok
}

// Add feeds one id and returns the text it completes, possibly "".
func (d *StreamDecoder) Add(id int) string {
	if !d.keep(id) {
		return ""
	}
	d.pending = append(d.pending, id)
	d.all = append(d.all, id)
	if d.isByteToken(id) || d.incompleteBytes() {
		return ""
	}
	text := d.decodeWindow()
	if !strings.HasPrefix(text, d.ctxText) {
		return ""
	}
	delta := text[len(d.ctxText):]
	if delta == "" {
		return ""
	}
	d.ctx = append(d.ctx[:0], d.pending...)
	d.pending = d.pending[:0]
	d.ctxText = d.t.Decode(d.ctx, false)
	d.emitted.WriteString(delta)
	return delta
}

// incompleteBytes reports whether, with a ByteLevel decoder, the bytes of
// the pending tokens end inside a UTF-8 sequence that more bytes could
// complete. (A U+FFFD the text itself holds is final and is emitted.)
func (d *StreamDecoder) incompleteBytes() bool {
	if !d.t.byteLevelDecode {
		return false
	}
	var tail []byte
	for i := len(d.pending) - 1; i >= 0 && len(tail) < utf8.UTFMax; i-- {
		tok, _ := d.t.IDToToken(d.pending[i])
		tail = append(tokenBytes(tok), tail...)
	}
	if len(tail) > utf8.UTFMax {
		tail = tail[len(tail)-utf8.UTFMax:]
	}
	// Find the start of the last sequence.
	for k := len(tail) - 1; k >= 0; k-- {
		if utf8.RuneStart(tail[k]) {
			return !utf8.FullRune(tail[k:])
		}
	}
	return false
}

func (d *StreamDecoder) decodeWindow() string {
	w := make([]int, 0, len(d.ctx)+len(d.pending))
	w = append(w, d.ctx...)
	w = append(w, d.pending...)
	return d.t.Decode(w, false)
}

// Flush returns the text still held back (an incomplete character at the
// end, for instance) and empties the pending ids.
func (d *StreamDecoder) Flush() string {
	if len(d.pending) == 0 {
		return ""
	}
	var delta string
	text := d.decodeWindow()
	if strings.HasPrefix(text, d.ctxText) {
		delta = text[len(d.ctxText):]
	} else {
		// Fall back to the whole sequence.
		base := d.t.Decode(d.primed, false)
		full := d.t.Decode(append(append([]int(nil), d.primed...), d.all...), false)
		done := base + d.emitted.String()
		n := 0
		for n < len(done) && n < len(full) && done[n] == full[n] {
			n++
		}
		delta = full[n:]
	}
	d.ctx = append(d.ctx[:0], d.pending...)
	d.pending = d.pending[:0]
	d.ctxText = d.t.Decode(d.ctx, false)
	d.emitted.WriteString(delta)
	return delta
}
