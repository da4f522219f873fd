package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoder turns token strings back into text pieces, as Hugging Face's
// Decoder::decode_chain does; the pieces are then concatenated.
type decoder interface {
	decode(toks []string) []string
}

type seqDecoder []decoder

func (s seqDecoder) decode(t []string) []string {
	for _, d := range s {
		t = d.decode(t)
	}
	return t
}

// replaceDecoder applies a replacer to every token.
type replaceDecoder struct{ *replacer }

func (r replaceDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = r.normalize(t)
	}
	return out
}

// byteToken parses a <0xNN> token.
func byteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	h := t[3:5]
	if h[0] == '+' { // Rust's from_str_radix accepts a leading plus
		h = h[1:]
	}
	var v byte
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case '0' <= c && c <= '9':
			v = v*16 + c - '0'
		case 'a' <= c && c <= 'f':
			v = v*16 + c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = v*16 + c - 'A' + 10
		default:
			return 0, false
		}
	}
	return v, true
}

type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decode(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := byteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

type fuseDecoder struct{}

func (fuseDecoder) decode(toks []string) []string {
	return []string{strings.Join(toks, "")}
}

type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rs := []rune(t)
		a := 0
		for k := 0; k < d.start && k < len(rs); k++ {
			if rs[k] != d.content {
				break
			}
			a = k + 1
		}
		b := len(rs)
		for k := 0; k < d.stop; k++ {
			idx := len(rs) - k - 1
			if idx < 0 || rs[idx] != d.content {
				break
			}
			b = idx
		}
		if a > b {
			a = b
		}
		out[i] = string(rs[a:b])
	}
	return out
}

type metaspaceDecoder struct {
	repl   rune
	scheme string
}

func (d metaspaceDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		drop := i == 0 && d.scheme != "never"
		out[i] = strings.Map(func(r rune) rune {
			if r == d.repl {
				if drop {
					return -1
				}
				return ' '
			}
			return r
		}, t)
	}
	return out
}

type byteLevelDecoder struct{}

func (byteLevelDecoder) decode(toks []string) []string {
	var b []byte
	for _, t := range toks {
		b = appendTokenBytes(b, t)
	}
	return []string{lossyUTF8(b)}
}

// appendTokenBytes appends the bytes a byte-level token stands for; a token
// with a character outside the byte table stands for its own UTF-8 bytes.
func appendTokenBytes(b []byte, t string) []byte {
	n := len(b)
	for _, r := range t {
		c, found := runeToByte[r]
		if !found {
			return append(b[:n], t...)
		}
		b = append(b, c)
	}
	return b
}

func tokenBytes(t string) []byte { return appendTokenBytes(nil, t) }

func hasByteLevel(d decoder) bool {
	switch x := d.(type) {
	case byteLevelDecoder:
		return true
	case seqDecoder:
		for _, e := range x {
			if hasByteLevel(e) {
				return true
			}
		}
	}
	return false
}

type wordPieceDecoder struct {
	prefix  string
	cleanup bool
}

func (d wordPieceDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		if i != 0 {
			if strings.HasPrefix(t, d.prefix) {
				t = strings.Replace(t, d.prefix, "", 1)
			} else {
				t = " " + t
			}
		}
		if d.cleanup {
			t = cleanupSequential(t)
		}
		out[i] = t
	}
	return out
}

// cleanupSequential applies the WordPiece clean-up replacements one after
// the other, as Hugging Face does.
func cleanupSequential(t string) string {
	pairs := [][2]string{{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
		{" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}}
	for _, p := range pairs {
		t = strings.ReplaceAll(t, p[0], p[1])
	}
	return t
}

type bpeDecoder struct{ suffix string }

func (d bpeDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rep := " "
		if i == len(toks)-1 {
			rep = ""
		}
		if d.suffix == "" {
			out[i] = t
			continue
		}
		out[i] = strings.ReplaceAll(t, d.suffix, rep)
	}
	return out
}

func hasByteFallback(d decoder) bool {
	switch x := d.(type) {
	case byteFallbackDecoder:
		return true
	case seqDecoder:
		for _, e := range x {
			if hasByteFallback(e) {
				return true
			}
		}
	}
	return false
}

func parseDecoder(raw json.RawMessage) (decoder, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var j struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Sequence: %v", err)
		}
		var seq seqDecoder
		for i, r := range j.Decoders {
			d, err := parseDecoder(r)
			if err != nil {
				return nil, fmt.Errorf("type Sequence.decoders[%d]: %w", i, err)
			}
			seq = append(seq, d)
		}
		return seq, nil
	case "Replace":
		r, err := parseReplace(raw)
		if err != nil {
			return nil, err
		}
		return replaceDecoder{r}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var j struct {
			Content *string `json:"content"`
			Start   int     `json:"start"`
			Stop    int     `json:"stop"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Strip: %v", err)
		}
		if j.Content == nil || utf8.RuneCountInString(*j.Content) != 1 {
			return nil, errors.New("type Strip: field content: want one character")
		}
		if j.Start < 0 || j.Stop < 0 {
			return nil, errors.New("type Strip: fields start and stop: must not be negative")
		}
		c, _ := utf8.DecodeRuneInString(*j.Content)
		return stripDecoder{c, j.Start, j.Stop}, nil
	case "Metaspace":
		var j struct {
			Replacement    *string `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Metaspace: %v", err)
		}
		m, err := metaspaceConfig(j.Replacement, j.PrependScheme, j.AddPrefixSpace)
		if err != nil {
			return nil, fmt.Errorf("type Metaspace: %w", err)
		}
		return metaspaceDecoder(m), nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "WordPiece":
		var j struct {
			Prefix  *string `json:"prefix"`
			Cleanup *bool   `json:"cleanup"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("WordPiece: %v", err)
		}
		d := wordPieceDecoder{prefix: "##", cleanup: true}
		if j.Prefix != nil {
			d.prefix = *j.Prefix
		}
		if j.Cleanup != nil {
			d.cleanup = *j.Cleanup
		}
		return d, nil
	case "BPEDecoder":
		var j struct {
			Suffix *string `json:"suffix"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("BPEDecoder: %v", err)
		}
		d := bpeDecoder{suffix: "</w>"}
		if j.Suffix != nil {
			d.suffix = *j.Suffix
		}
		return d, nil
	}
	return nil, fmt.Errorf("unsupported decoder type %q", typ)
}
