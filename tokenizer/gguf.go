package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Token types of a GGUF vocabulary (tokenizer.ggml.token_type), as
// llama.cpp numbers them.
const (
	TokenUndefined   = 0
	TokenNormal      = 1
	TokenUnknown     = 2
	TokenControl     = 3
	TokenUserDefined = 4
	TokenUnused      = 5
	TokenByte        = 6
)

// GGUFVocab is the tokenizer a GGUF file describes with its tokenizer.ggml.*
// keys. It does not depend on the file format: the caller copies the
// arrays out of the file. Ids given as -1 are absent from the file, and the
// defaults of llama.cpp for the model type apply.
type GGUFVocab struct {
	Model  string    // tokenizer.ggml.model: "llama" (SentencePiece-style) or "gpt2" (byte-level BPE)
	Pre    string    // tokenizer.ggml.pre: the pre-tokenizer of "gpt2" ("" reads as "default")
	Tokens []string  // tokenizer.ggml.tokens, by id
	Scores []float32 // tokenizer.ggml.scores; nil: all 0
	Types  []int32   // tokenizer.ggml.token_type; nil: all TokenNormal
	Merges []string  // tokenizer.ggml.merges ("left right", by rank); "gpt2" only

	BOS, EOS, UNK, PAD int // tokenizer.ggml.{bos,eos,unknown,padding}_token_id; -1: absent

	AddBOS, AddEOS, AddSpacePrefix *bool // tokenizer.ggml.add_{bos,eos}_token, add_space_prefix; nil: absent
}

// ggVocab is what a tokenizer made from GGUF metadata needs beyond the
// Hugging Face machinery: the SentencePiece-style merge by scores and
// llama.cpp's token-to-piece rules.
type ggVocab struct {
	spm            bool
	scores         []float32
	types          []int32
	pieces         []string // the text of each token as llama.cpp prints it
	byteTok        [256]int32
	unk            int
	addSpacePrefix bool
	addBOS, addEOS bool
	bos, eos       int
}

// maxGGUFTokens bounds the vocabulary of a GGUF tokenizer.
const maxGGUFTokens = 1 << 22

// FromGGUF builds a tokenizer that encodes and decodes as llama.cpp does
// with the same metadata:
//
//   - "llama": llama.cpp's SentencePiece-style tokenizer (llm_tokenizer_spm):
//     spaces become U+2581, a space is put before every stretch of text
//     when add_space_prefix is set (the default), the characters of the
//     text are merged pairwise, highest score first and leftmost first
//     among equal scores, into any pair that is a token, and characters left
//     that are not tokens become their <0xNN> byte tokens;
//   - "gpt2": byte-level BPE with the merges by rank, after the
//     pre-tokenizer llama.cpp names in tokenizer.ggml.pre: "default",
//     the GPT-2 family ("gpt-2", "phi-2", ...), the Llama-3 family
//     ("llama-bpe", "llama3", ...) and the Qwen-2 family ("qwen2", ...).
//
// Control, unknown and user-defined tokens are matched in the text by
// Encode (as Hugging Face's added tokens are); the others only through the
// algorithm above. Encode with addSpecial puts BOS first when add_bos_token
// says so (by default for "llama") and EOS last when add_eos_token does.
// Decode joins the tokens' pieces as llama.cpp's detokenizer does (a
// leading space of the first token dropped when add_space_prefix is set;
// with skipSpecial, control and unknown tokens left out), without
// llama.cpp's optional clean-up of spaces before punctuation.
func FromGGUF(v GGUFVocab) (*Tokenizer, error) {
	n := len(v.Tokens)
	if n == 0 && v.Model != "none" && v.Model != "no_vocab" {
		return nil, errors.New("tokenizer: tokenizer.ggml.tokens: empty")
	}
	if n > maxGGUFTokens {
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.tokens: %d tokens, more than %d", n, maxGGUFTokens)
	}
	if v.Scores != nil && len(v.Scores) < n {
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.scores: %d scores for %d tokens", len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) < n {
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.token_type: %d types for %d tokens", len(v.Types), n)
	}
	g := &ggVocab{scores: v.Scores, types: v.Types, unk: -1}
	if g.types == nil {
		g.types = make([]int32, n)
		for i := range g.types {
			g.types[i] = TokenNormal
		}
	}
	tokens := make([]string, n)
	ids := make(map[string]int, n)
	for i, tok := range v.Tokens {
		if tok == "" {
			tok = fmt.Sprintf("[EMPTY_%d]", i) // llama.cpp's name for an empty token
		}
		if j, dup := ids[tok]; dup {
			return nil, fmt.Errorf("tokenizer: tokenizer.ggml.tokens: token %q at ids %d and %d", tok, j, i)
		}
		ids[tok] = i
		tokens[i] = tok
	}
	def := func(id, fallback int) int {
		if id >= 0 && id < n {
			return id
		}
		if fallback >= 0 && fallback < n {
			return fallback
		}
		return -1
	}
	var pre []json.RawMessage
	var decoder json.RawMessage
	ignoreMerges := false
	var merges []string
	switch v.Model {
	case "llama":
		g.spm = true
		g.addSpacePrefix, g.addBOS = true, true
		g.bos, g.eos, g.unk = def(v.BOS, 1), def(v.EOS, 2), def(v.UNK, 0)
	case "gpt2":
		g.bos, g.eos, g.unk = def(v.BOS, 11), def(v.EOS, 11), def(v.UNK, -1)
		steps, ign, addBOS, err := ggufPreTokenizer(v.Pre)
		if err != nil {
			return nil, err
		}
		ignoreMerges, g.addBOS = ign, addBOS
		pre = append(steps, json.RawMessage(`{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}`))
		decoder = json.RawMessage(`{"type":"ByteLevel"}`)
		if v.Merges == nil {
			return nil, errors.New("tokenizer: tokenizer.ggml.merges: missing (a gpt2 vocabulary needs merges)")
		}
		merges = v.Merges
	case "":
		return nil, errors.New("tokenizer: tokenizer.ggml.model: missing")
	case "none", "no_vocab":
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.model is %q: the file has no tokenizer (pass token ids with --ids)", v.Model)
	default:
		return nil, fmt.Errorf("tokenizer: tokenizer.ggml.model: %q is not supported (want llama or gpt2)", v.Model)
	}
	if v.AddBOS != nil {
		g.addBOS = *v.AddBOS
	}
	if v.AddEOS != nil {
		g.addEOS = *v.AddEOS
	}
	if v.AddSpacePrefix != nil && g.spm {
		g.addSpacePrefix = *v.AddSpacePrefix
	}
	if g.addBOS && g.bos < 0 {
		return nil, errors.New("tokenizer: tokenizer.ggml.add_bos_token: true but there is no BOS token")
	}
	if g.addEOS && g.eos < 0 {
		return nil, errors.New("tokenizer: tokenizer.ggml.add_eos_token: true but there is no EOS token")
	}

	// The vocabulary, merges and added tokens go through the Hugging Face
	// loader, which builds the lookup tables, the added-token matcher and,
	// for gpt2, the whole byte-level BPE pipeline.
	var added []addedTokenJSON
	for i := range tokens {
		switch g.types[i] {
		case TokenControl, TokenUnknown, TokenUserDefined:
			id, content := i, tokens[i]
			f := false
			added = append(added, addedTokenJSON{ID: &id, Content: &content, Normalized: &f, Special: g.types[i] != TokenUserDefined})
		}
	}
	model := map[string]any{"type": "BPE", "vocab": ids, "merges": merges, "byte_fallback": false, "ignore_merges": ignoreMerges}
	if merges == nil {
		model["merges"] = []string{}
	}
	file := map[string]any{"model": model, "added_tokens": added}
	if pre != nil {
		file["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": pre}
	}
	if decoder != nil {
		file["decoder"] = decoder
	}
	data, err := json.Marshal(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %v", err)
	}
	t, err := load(data, nil)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: GGUF vocabulary: %w", err)
	}
	t.gg = g
	t.post = nil
	if g.addBOS || g.addEOS {
		p := &templateProcessor{}
		if g.addBOS {
			p.prefix = []int{g.bos}
		}
		if g.addEOS {
			p.suffix = []int{g.eos}
		}
		t.post = p
	}
	t.bos, t.hasBOS = g.bos, g.bos >= 0
	t.eos, t.hasEOS = g.eos, g.eos >= 0
	for i := range g.byteTok {
		g.byteTok[i] = -1
	}
	g.pieces = make([]string, n)
	for i, tok := range tokens {
		g.pieces[i] = g.piece(tok, g.types[i])
		if g.spm {
			if b, ok := byteToken(tok); ok && len(tok) == 6 && g.byteTok[b] < 0 {
				g.byteTok[b] = int32(i)
			}
		}
	}
	if g.spm {
		// llama.cpp falls back to the one-byte token when <0xNN> is absent.
		for b := range 256 {
			if g.byteTok[b] < 0 {
				if id, ok := ids[string([]byte{byte(b)})]; ok {
					g.byteTok[b] = int32(id)
				}
			}
		}
		t.byteFallbackDecode = true
	} else {
		t.byteLevelDecode = true
	}
	return t, nil
}

// ggufPreTokenizer returns the pre-tokenizer steps (as tokenizer.json
// components) llama.cpp uses for a gpt2 vocabulary's tokenizer.ggml.pre,
// whether it ignores merges for words that are tokens, and its add_bos
// default.
func ggufPreTokenizer(name string) (steps []json.RawMessage, ignoreMerges, addBOS bool, err error) {
	split := func(re string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"type": "Split", "pattern": map[string]string{"Regex": re}, "behavior": "Isolated", "invert": false})
		return b
	}
	switch name {
	case "", "default":
		return []json.RawMessage{
			split(`[\p{P}\$\+<=>\^~\|]+`),
			split(gpt2Pattern),
			split(`\p{N}+`),
			split(`[0-9][0-9][0-9]`),
		}, false, false, nil
	case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert",
		"mpt", "olmo", "jais", "trillion", "granite-docling":
		return []json.RawMessage{split(gpt2Pattern)}, false, false, nil
	case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe":
		ign := name != "dbrx" && name != "smaug-bpe"
		return []json.RawMessage{split(llama3Pattern)}, ign, ign, nil
	case "qwen2", "stablelm2", "hunyuan", "solar-open":
		return []json.RawMessage{split(qwen2Pattern)}, false, false, nil
	}
	return nil, false, false, fmt.Errorf("tokenizer: tokenizer.ggml.pre: pre-tokenizer %q is not supported (supported: default, gpt-2, llama-bpe, qwen2 and their aliases)", name)
}

// piece is the text llama.cpp's token_to_piece gives a token (special
// tokens included).
func (g *ggVocab) piece(tok string, typ int32) string {
	switch typ {
	case TokenControl, TokenUnknown, TokenUserDefined:
		return tok
	case TokenNormal:
		if g.spm {
			return strings.ReplaceAll(tok, "\u2581", " ")
		}
		return string(tokenBytes(tok))
	case TokenByte:
		if g.spm {
			if b, ok := byteToken(tok); ok {
				return string([]byte{b})
			}
			return ""
		}
		return string(tokenBytes(tok))
	}
	return "" // unused and undefined tokens print nothing
}

// isSpecialType reports whether llama.cpp leaves a token out of decoded text
// unless asked to render special tokens.
func isSpecialType(typ int32) bool { return typ == TokenControl || typ == TokenUnknown }

// ggDecode is Decode for a tokenizer from GGUF metadata: llama.cpp's
// detokenize, the text made valid UTF-8 as Hugging Face's decoders do
// (each ill-formed byte sequence becomes U+FFFD).
func (t *Tokenizer) ggDecode(ids []int, skipSpecial bool) string {
	g := t.gg
	removeSpace := g.addSpacePrefix
	if skipSpecial && g.addBOS && len(ids) > 0 && ids[0] == g.bos {
		removeSpace = false
		ids = ids[1:]
	}
	if skipSpecial && g.addEOS && len(ids) > 0 && ids[len(ids)-1] == g.eos {
		ids = ids[:len(ids)-1]
	}
	var b []byte
	for _, id := range ids {
		if id < 0 || id >= len(g.pieces) {
			continue
		}
		p := g.pieces[id]
		if skipSpecial && isSpecialType(g.types[id]) {
			p = ""
		}
		if removeSpace && strings.HasPrefix(p, " ") {
			p = p[1:]
		}
		removeSpace = false
		b = append(b, p...)
	}
	return lossyUTF8(b)
}

// spmBigram is a candidate merge of the symbols left and right.
type spmBigram struct {
	left, right int32
	score       float32
	size        int32
}

// before is the priority of llama.cpp's SPM work queue: higher score first,
// then the leftmost pair.
func (a spmBigram) before(b spmBigram) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.left < b.left
}

type spmSymbol struct {
	start, n   int32
	prev, next int32
}

// spmEncode appends the ids of one stretch of text (between two added
// tokens) as llama.cpp's llm_tokenizer_spm_session does.
func (t *Tokenizer) spmEncode(s string, out []int) []int {
	g := t.gg
	if g.addSpacePrefix {
		s = " " + s
	}
	s = strings.ReplaceAll(s, " ", "\u2581")
	if s == "" {
		return out
	}
	// One symbol per UTF-8 character as llama.cpp cuts them: the length
	// comes from the lead byte alone (a stray continuation byte is a
	// character of its own), cut at the end of the text.
	syms := make([]spmSymbol, 0, len(s))
	for off := 0; off < len(s); {
		n := utf8Len(s[off])
		n = min(n, len(s)-off)
		i := int32(len(syms))
		next := i + 1
		if off+n == len(s) {
			next = -1
		}
		syms = append(syms, spmSymbol{start: int32(off), n: int32(n), prev: i - 1, next: next})
		off += n
	}
	var heap []spmBigram
	push := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		a := syms[l]
		text := s[a.start : a.start+a.n+syms[r].n]
		id, ok := t.vocab[text]
		if !ok || id >= len(g.types) {
			return
		}
		var score float32
		if g.scores != nil {
			score = g.scores[id]
		}
		heap = append(heap, spmBigram{l, r, score, int32(len(text))})
		// sift up
		k := len(heap) - 1
		for k > 0 {
			p := (k - 1) / 2
			if !heap[k].before(heap[p]) {
				break
			}
			heap[k], heap[p] = heap[p], heap[k]
			k = p
		}
	}
	pop := func() spmBigram {
		top := heap[0]
		last := len(heap) - 1
		heap[0] = heap[last]
		heap = heap[:last]
		k := 0
		for {
			l := 2*k + 1
			if l >= len(heap) {
				break
			}
			c := l
			if r := l + 1; r < len(heap) && heap[r].before(heap[l]) {
				c = r
			}
			if !heap[c].before(heap[k]) {
				break
			}
			heap[k], heap[c] = heap[c], heap[k]
			k = c
		}
		return top
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		push(i-1, i)
	}
	for len(heap) > 0 {
		b := pop()
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue // one of them has merged since
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		push(l.prev, b.left)
		push(b.left, l.next)
	}
	for i := int32(0); i != -1; i = syms[i].next {
		sym := syms[i]
		text := s[sym.start : sym.start+sym.n]
		if id, ok := t.vocab[text]; ok {
			out = append(out, id)
			continue
		}
		// A character that is no token: its bytes.
		for k := 0; k < len(text); k++ {
			if id := g.byteTok[text[k]]; id >= 0 {
				out = append(out, int(id))
			} else if g.unk >= 0 {
				out = append(out, g.unk)
			}
		}
	}
	return out
}

// utf8Len is the length llama.cpp's unicode_len_utf8 gives a character
// from its first byte.
func utf8Len(c byte) int {
	switch c >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}
