// Package schemagen makes random JSON schemas of the subset package
// structured supports, for tests.
package schemagen

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// formats are the formats package structured supports.
var formats = []string{"date", "time", "date-time", "uuid", "email", "ipv4"}

// Gen writes random schemas of the supported subset. With Bounded, every
// value it allows has a bounded length (strings have a maxLength, arrays a
// maxItems, no object takes any key), so that a generation under it must
// end.
type Gen struct {
	Rng     *rand.Rand
	Bounded bool
}

var patterns = []string{`^[a-z]+$`, `^\d{3}-\d{4}$`, `^[A-Z][a-z]*$`, `ab+c`, `^(red|green|blue)$`,
	`^[0-9a-f]{4,8}$`, `x`, `^[a-z]{2,5}(-[0-9]+)?$`, `^.{0,6}$`}

func (g *Gen) value(depth int) string {
	r := g.Rng
	switch r.IntN(6) {
	case 0:
		return "null"
	case 1:
		return []string{"true", "false"}[r.IntN(2)]
	case 2:
		return fmt.Sprint(r.IntN(2000) - 1000)
	case 3:
		return []string{"1.5", "-0.25", "3e2"}[r.IntN(3)]
	case 4:
		return []string{`"a"`, `"b c"`, `"é"`, `"x\"y"`, `""`, `"line\nbreak"`}[r.IntN(6)]
	}
	if depth > 0 {
		return `{"k":` + g.value(depth-1) + `}`
	}
	return `[1,"two"]`
}

// Schema returns a schema nested at most depth levels.
func (g *Gen) Schema(depth int) string {
	r := g.Rng
	desc := ""
	if r.IntN(5) == 0 {
		desc = `"description":"a value",`
	}
	kinds := 9
	if depth <= 0 {
		kinds = 6
	}
	switch r.IntN(kinds) {
	case 0:
		var parts []string
		switch r.IntN(3) {
		case 0:
			if g.Bounded {
				parts = append(parts, fmt.Sprintf(`"maxLength":%d`, r.IntN(12)))
			}
		case 1:
			lo := r.IntN(5)
			parts = append(parts, fmt.Sprintf(`"minLength":%d,"maxLength":%d`, lo, lo+r.IntN(8)))
		case 2:
			if r.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf(`"pattern":%q`, patterns[r.IntN(len(patterns))]))
				if g.Bounded {
					parts = append(parts, fmt.Sprintf(`"maxLength":%d`, 8+r.IntN(8)))
				}
			} else {
				parts = append(parts, fmt.Sprintf(`"format":%q`, formats[r.IntN(len(formats))]))
			}
		}
		return "{" + desc + strings.Join(append([]string{`"type":"string"`}, parts...), ",") + "}"
	case 1:
		s := `{` + desc + `"type":"integer"`
		if r.IntN(2) == 0 {
			lo := r.IntN(2000) - 1000
			s += fmt.Sprintf(`,"minimum":%d,"maximum":%d`, lo, lo+r.IntN(3000))
		} else if r.IntN(2) == 0 {
			s += fmt.Sprintf(`,"exclusiveMinimum":%d`, r.IntN(100)-50)
		}
		return s + "}"
	case 2:
		if r.IntN(3) == 0 {
			return fmt.Sprintf(`{"type":"number","minimum":%g,"maximum":%g}`, float64(r.IntN(100))-50.5, float64(r.IntN(100))+50.5)
		}
		return `{` + desc + `"type":"number"}`
	case 3:
		if g.Bounded {
			return []string{`{"type":"boolean"}`, `{"type":"null"}`, `{"type":["string","null"],"maxLength":5}`, `{"type":["integer","boolean"]}`}[r.IntN(4)]
		}
		return []string{`{"type":"boolean"}`, `{"type":"null"}`, `{"type":["string","null"]}`, `{}`}[r.IntN(4)]
	case 4:
		n := 1 + r.IntN(5)
		var vals []string
		seen := map[string]bool{}
		for range n {
			v := g.value(1)
			if !seen[v] {
				seen[v] = true
				vals = append(vals, v)
			}
		}
		return `{` + desc + `"enum":[` + strings.Join(vals, ",") + `]}`
	case 5:
		return `{"const":` + g.value(1) + `}`
	case 6:
		n := 1 + r.IntN(5)
		var props, req []string
		for i := range n {
			name := []string{"id", "name", "value", "items", "a", "ab", "abc", "x y", "é", "n" + fmt.Sprint(i)}[r.IntN(10)]
			if strings.Contains(strings.Join(props, ""), `"`+name+`":`) {
				continue
			}
			props = append(props, fmt.Sprintf("%q:%s", name, g.Schema(depth-1)))
			if r.IntN(2) == 0 {
				req = append(req, fmt.Sprintf("%q", name))
			}
		}
		s := `{` + desc + `"type":"object","properties":{` + strings.Join(props, ",") + `}`
		if len(req) > 0 {
			s += `,"required":[` + strings.Join(req, ",") + `]`
		}
		if r.IntN(2) == 0 {
			s += `,"additionalProperties":false`
		}
		return s + "}"
	case 7:
		s := `{"type":"array","items":` + g.Schema(depth-1)
		if g.Bounded || r.IntN(2) == 0 {
			lo := r.IntN(3)
			s += fmt.Sprintf(`,"minItems":%d,"maxItems":%d`, lo, lo+r.IntN(4))
		}
		return s + "}"
	default:
		n := 2 + r.IntN(2)
		var alts []string
		for range n {
			alts = append(alts, g.Schema(depth-1))
		}
		return `{"anyOf":[` + strings.Join(alts, ",") + `]}`
	}
}
