package tokenizer

import "strings"

// TokenBytes returns the bytes token id adds to a text in which it
// follows other tokens: its decoded text, but exact where a token stands
// for part of a UTF-8 sequence (a byte-fallback token such as <0xE6>, or a
// byte-level token), and without the leading space some decoders drop at
// the start of a text. Special tokens have none (ok is false): they are
// not text.
func (t *Tokenizer) TokenBytes(id int) (b []byte, ok bool) {
	tok, found := t.IDToToken(id)
	if !found || t.IsSpecial(id) {
		return nil, false
	}
	if t.decoder == nil {
		return []byte(tok), true
	}
	if hasByteLevel(t.decoder) {
		return tokenBytes(tok), true
	}
	if hasByteFallback(t.decoder) {
		if c, isByte := byteToken(tok); isByte {
			return []byte{c}, true
		}
	}
	// After an ordinary piece, so that a decoder that strips the start of
	// a text leaves this token alone.
	const anchor = "a"
	base := t.decodeTokens([]string{anchor})
	if full := t.decodeTokens([]string{anchor, tok}); strings.HasPrefix(full, base) {
		return []byte(full[len(base):]), true
	}
	return []byte(t.decodeTokens([]string{tok})), true
}
