package tokenizer

import (
	"errors"
	"fmt"
	"sort"
)

// ToGGUF returns the vocabulary llama.cpp's converter (convert_hf_to_gguf)
// writes for this Hugging Face tokenizer:
//
//   - a BPE model with byte fallback (Llama-2 and Jamba style) becomes a
//     "llama" vocabulary as its LlamaHfVocab writes it: the tokens by id,
//     every score −1000, <0xNN> tokens BYTE, special tokens CONTROL, other
//     added tokens USER_DEFINED, the rest NORMAL, pre-tokenizer "default";
//   - a byte-level BPE model becomes a "gpt2" vocabulary with its merges and
//     the pre-tokenizer name of its split pattern ("gpt-2", "llama-bpe" or
//     "qwen2").
//
// BOS and EOS are the tokenizer's; AddBOS and AddEOS say whether Encode
// with special tokens adds them. The caller sets add_space_prefix (Jamba's
// converter writes false) and the padding id.
func (t *Tokenizer) ToGGUF() (GGUFVocab, error) {
	v := GGUFVocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	if t.gg != nil {
		return v, errors.New("tokenizer: already a GGUF vocabulary")
	}
	m := t.model
	n := len(t.idToTok)
	v.Tokens = make([]string, n)
	v.Types = make([]int32, n)
	v.Scores = make([]float32, n)
	for id := range n {
		if !t.hasTok[id] {
			return v, fmt.Errorf("tokenizer: id %d has no token; a GGUF vocabulary needs every id below %d", id, n)
		}
		tok := t.idToTok[id]
		v.Tokens[id] = tok
		v.Scores[id] = -1000
		_, inModel := m.vocab[tok]
		switch {
		case t.special[id]:
			v.Types[id] = TokenControl
		case !inModel:
			v.Types[id] = TokenUserDefined
		case isByteTokenText(tok):
			v.Types[id] = TokenByte
		default:
			v.Types[id] = TokenNormal
		}
	}
	switch {
	case m.byteFallback && !t.byteLevel:
		v.Model, v.Pre = "llama", "default"
	case t.byteLevel:
		v.Model = "gpt2"
		v.Scores = nil
		v.Pre = ""
		for _, st := range t.preSteps {
			if ps, ok := st.(*patternSplit); ok {
				v.Pre = ps.name
			}
		}
		if v.Pre == "" {
			v.Pre = "gpt-2" // ByteLevel's own regex
		}
		for i := range v.Types {
			if v.Types[i] == TokenByte {
				v.Types[i] = TokenNormal
			}
		}
		type merge struct {
			rank int32
			s    string
		}
		ms := make([]merge, 0, len(m.merges))
		for key, mv := range m.merges {
			a, b := m.tokens[int(key>>32)], m.tokens[int(uint32(key))]
			ms = append(ms, merge{mv.rank, a + " " + b})
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].rank < ms[j].rank })
		v.Merges = make([]string, len(ms))
		for i, x := range ms {
			v.Merges[i] = x.s
		}
	default:
		return v, errors.New("tokenizer: only BPE tokenizers with byte fallback or byte-level BPE convert to a GGUF vocabulary")
	}
	if t.hasBOS {
		v.BOS = t.bos
	}
	if t.hasEOS {
		v.EOS = t.eos
	}
	if m.hasUnk {
		v.UNK = m.unkID
	}
	addBOS, addEOS := false, false
	if tp, ok := t.post.(*templateProcessor); ok {
		addBOS = len(tp.prefix) > 0 && t.hasBOS && tp.prefix[0] == t.bos
		addEOS = len(tp.suffix) > 0 && t.hasEOS && tp.suffix[len(tp.suffix)-1] == t.eos
	}
	v.AddBOS = &addBOS
	if addEOS {
		v.AddEOS = &addEOS
	}
	return v, nil
}

// isByteTokenText matches <0xNN> with two hex digits of either case.
func isByteTokenText(s string) bool {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return false
	}
	for _, c := range []byte(s[3:5]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
