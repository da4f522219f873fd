package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites text before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

type typeOnly struct {
	Type string `json:"type"`
}

func componentType(raw json.RawMessage) (string, error) {
	var t typeOnly
	if err := json.Unmarshal(raw, &t); err != nil {
		return "", fmt.Errorf("invalid: %v", err)
	}
	if t.Type == "" {
		return "", errors.New("field type: missing")
	}
	return t.Type, nil
}

type seqNormalizer []normalizer

func (s seqNormalizer) normalize(x string) string {
	for _, n := range s {
		x = n.normalize(x)
	}
	return x
}

type prependNormalizer string

func (p prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

// replacer is the Replace step of normalizers and decoders: every match of
// a literal string or a regex becomes content.
type replacer struct {
	lit     string
	re      *regexp.Regexp
	content string
}

func (r *replacer) normalize(s string) string {
	if r.re != nil {
		return r.re.ReplaceAllLiteralString(s, r.content)
	}
	if r.lit == "" {
		return s
	}
	return strings.ReplaceAll(s, r.lit, r.content)
}

// parseReplace reads a Replace component ({"pattern": {String|Regex}, "content"}).
func parseReplace(raw json.RawMessage) (*replacer, error) {
	var j struct {
		Pattern patternJSON `json:"pattern"`
		Content *string     `json:"content"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("type Replace: %v", err)
	}
	if j.Content == nil {
		return nil, errors.New("type Replace: field content: missing")
	}
	r := &replacer{content: *j.Content}
	switch {
	case j.Pattern.String != nil:
		r.lit = *j.Pattern.String
	case j.Pattern.Regex != nil:
		re, err := compileRegex(*j.Pattern.Regex)
		if err != nil {
			return nil, fmt.Errorf("type Replace: field pattern: %w", err)
		}
		r.re = re
	default:
		return nil, errors.New("type Replace: field pattern: want String or Regex")
	}
	return r, nil
}

type formNormalizer struct{ f norm.Form }

func (f formNormalizer) normalize(s string) string { return f.f.String(s) }

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string {
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if ascii {
		if !upper {
			return s
		}
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == 0x130 { // full lowercase mapping: i + combining dot above
			b.WriteString("i\u0307")
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

type stripNormalizer struct{ left, right bool }

func (n stripNormalizer) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

type stripAccentsNormalizer struct{}

func (stripAccentsNormalizer) normalize(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) {
			return -1
		}
		return r
	}, s)
}

// patternJSON is the pattern of Replace and Split: {"String": ...} or
// {"Regex": ...}.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var j struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Sequence: %v", err)
		}
		var seq seqNormalizer
		for i, r := range j.Normalizers {
			n, err := parseNormalizer(r)
			if err != nil {
				return nil, fmt.Errorf("type Sequence.normalizers[%d]: %w", i, err)
			}
			seq = append(seq, n)
		}
		return seq, nil
	case "Prepend":
		var j struct {
			Prepend *string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &j); err != nil || j.Prepend == nil {
			return nil, errors.New("type Prepend: field prepend: missing or not a string")
		}
		return prependNormalizer(*j.Prepend), nil
	case "Replace":
		return parseReplace(raw)
	case "NFC":
		return formNormalizer{norm.NFC}, nil
	case "NFD":
		return formNormalizer{norm.NFD}, nil
	case "NFKC":
		return formNormalizer{norm.NFKC}, nil
	case "NFKD":
		return formNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Strip":
		var j struct {
			Left  *bool `json:"strip_left"`
			Right *bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Strip: %v", err)
		}
		n := stripNormalizer{true, true}
		if j.Left != nil {
			n.left = *j.Left
		}
		if j.Right != nil {
			n.right = *j.Right
		}
		return n, nil
	case "StripAccents":
		return stripAccentsNormalizer{}, nil
	}
	return nil, fmt.Errorf("unsupported normalizer type %q", typ)
}
