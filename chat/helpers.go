package chat

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

type fn = func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error)

// TemplateError is the error a template raises on purpose through
// raise_exception, for example when a conversation breaks the template's
// rules (roles out of order, an unsupported tool type). Callers usually
// report it as a bad request.
type TemplateError struct {
	Message string
}

// Error returns the message with a "chat template: " prefix.
func (e *TemplateError) Error() string { return "chat template: " + e.Message }

// filters are the filters defined here. They replace the engine's own
// version where one exists (see rewriteSource).
var filters = map[string]fn{
	"tojson": filterToJSON,
	"title":  filterTitle,
	"string": func(a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewString(pyStr(arg(a, 0))), nil
	},
	"list": filterList,
}

// methods are the Python methods defined here, called with the receiver
// as the first argument.
var methods = map[string]fn{}

func init() {
	for name, m := range strMethods {
		methods[name] = method(name, m)
	}
	for _, name := range []string{"count", "index"} {
		if _, ok := methods[name]; !ok {
			methods[name] = method(name, nil)
		}
	}
}

func arg(a []jinja.Value, i int) jinja.Value {
	if i < len(a) {
		return a[i]
	}
	return jinja.Undefined()
}

// param returns the i-th positional argument or the keyword argument name.
func param(a []jinja.Value, kw map[string]jinja.Value, i int, name string) jinja.Value {
	if v, ok := kw[name]; ok {
		return v
	}
	return arg(a, i)
}

func given(v jinja.Value) bool { return !v.IsUndefined() && !v.IsNone() }

// filterToJSON is Hugging Face's tojson: json.dumps(x, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False), the arguments after x
// being positional or keywords in that order. Key order is kept.
func filterToJSON(a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
	o := jsonOptions{itemSep: ", ", keySep: ": "}
	o.ensureASCII = param(a, kw, 1, "ensure_ascii").IsTruthy()
	if ind := param(a, kw, 2, "indent"); given(ind) {
		var s string
		switch {
		case ind.IsString():
			s = ind.AsString()
		case ind.IsInt():
			s = strings.Repeat(" ", int(max(0, ind.AsInt())))
		default:
			return jinja.Undefined(), fmt.Errorf("tojson: indent must be an int or a string, not %s", pyTypeName(ind))
		}
		o.indent = &s
		o.itemSep = ","
	}
	if sep := param(a, kw, 3, "separators"); given(sep) {
		if !sep.IsList() || sep.AsList().Len() != 2 || !sep.AsList().Items[0].IsString() || !sep.AsList().Items[1].IsString() {
			return jinja.Undefined(), fmt.Errorf("tojson: separators must be a pair of strings")
		}
		o.itemSep = sep.AsList().Items[0].AsString()
		o.keySep = sep.AsList().Items[1].AsString()
	}
	o.sortKeys = param(a, kw, 4, "sort_keys").IsTruthy()
	s, err := pyJSON(arg(a, 0), o)
	if err != nil {
		return jinja.Undefined(), err
	}
	return jinja.NewString(s), nil
}

// filterTitle is Jinja's title filter: words start after runs of
// whitespace, '-', '(', '{', '[' or '<'; each word gets its first
// character upper-cased and the rest lower-cased.
func filterTitle(a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	s := pyStr(arg(a, 0))
	var b strings.Builder
	start := true
	for _, r := range s {
		if unicode.IsSpace(r) || strings.ContainsRune("-({[<", r) {
			b.WriteRune(r)
			start = true
			continue
		}
		if start {
			b.WriteString(strings.ToUpper(string(r)))
		} else {
			b.WriteString(strings.ToLower(string(r)))
		}
		start = false
	}
	return jinja.NewString(b.String()), nil
}

// filterList is Jinja's list filter: the keys of a mapping, the characters
// of a string, a copy of a list.
func filterList(a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	v := arg(a, 0)
	var items []jinja.Value
	switch {
	case v.IsUndefined():
	case v.IsList():
		items = append(items, v.AsList().Items...)
	case v.IsDict():
		for _, k := range v.AsDict().Keys {
			items = append(items, jinja.NewString(k))
		}
	case v.IsString():
		for _, r := range v.AsString() {
			items = append(items, jinja.NewString(string(r)))
		}
	default:
		return jinja.Undefined(), fmt.Errorf("list: '%s' object is not iterable", pyTypeName(v))
	}
	return jinja.NewList(items), nil
}

// method wraps a Python method. Like Jinja's attribute lookup it tries
// the method of the receiver's type first and then a callable stored
// under that key in a mapping.
func method(name string, strFn func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error)) fn {
	return func(a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		recv := arg(a, 0)
		rest := a[min(1, len(a)):]
		switch {
		case recv.IsString() && strFn != nil:
			return strFn(recv.AsString(), rest, kw)
		case recv.IsList() && (name == "count" || name == "index"):
			items := recv.AsList().Items
			x := arg(rest, 0)
			n := 0
			for i, it := range items {
				if pyEqual(it, x) {
					if name == "index" {
						return jinja.NewInt(int64(i)), nil
					}
					n++
				}
			}
			if name == "index" {
				return jinja.Undefined(), fmt.Errorf("list.index(x): %s not in list", pyStr(x))
			}
			return jinja.NewInt(int64(n)), nil
		case recv.IsDict():
			if f, ok := recv.AsDict().Get(name); ok && f.IsCallable() {
				return f.AsCallable().Fn(rest, kw)
			}
		case recv.IsUndefined():
			return jinja.Undefined(), fmt.Errorf("undefined value has no attribute '%s'", name)
		}
		return jinja.Undefined(), fmt.Errorf("'%s' object has no attribute '%s'", pyTypeName(recv), name)
	}
}

func pyEqual(a, b jinja.Value) bool {
	if a.IsNumber() && b.IsNumber() {
		var x, y float64
		if a.IsInt() {
			x = float64(a.AsInt())
		} else {
			x = a.AsFloat()
		}
		if b.IsInt() {
			y = float64(b.AsInt())
		} else {
			y = b.AsFloat()
		}
		return x == y
	}
	return a.Equals(b)
}

// isPySpace reports whether Python's str.isspace holds for r.
func isPySpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

func stripArg(a []jinja.Value, kw map[string]jinja.Value) (func(rune) bool, error) {
	c := param(a, kw, 0, "chars")
	if !given(c) {
		return isPySpace, nil
	}
	if !c.IsString() {
		return nil, fmt.Errorf("strip arg must be None or str")
	}
	set := c.AsString()
	return func(r rune) bool { return strings.ContainsRune(set, r) }, nil
}

func strList(parts []string) jinja.Value {
	items := make([]jinja.Value, len(parts))
	for i, p := range parts {
		items[i] = jinja.NewString(p)
	}
	return jinja.NewList(items)
}

// affixes returns the prefixes a startswith or endswith argument names: a
// string or a tuple (list) of strings.
func affixes(v jinja.Value) ([]string, error) {
	if v.IsString() {
		return []string{v.AsString()}, nil
	}
	if v.IsList() {
		var out []string
		for _, it := range v.AsList().Items {
			if !it.IsString() {
				return nil, fmt.Errorf("tuple for startswith/endswith must only contain str")
			}
			out = append(out, it.AsString())
		}
		return out, nil
	}
	return nil, fmt.Errorf("startswith/endswith first arg must be str or a tuple of str, not %s", pyTypeName(v))
}

func boolOf(f func(rune) bool) func(string, []jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
	return func(s string, _ []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if s == "" {
			return jinja.NewBool(false), nil
		}
		for _, r := range s {
			if !f(r) {
				return jinja.NewBool(false), nil
			}
		}
		return jinja.NewBool(true), nil
	}
}

// splitWhite splits s on runs of whitespace at most limit times (limit < 0: no
// limit), from the left or, with right, from the right, as str.split() and
// str.rsplit() with no separator do.
func splitWhite(s string, limit int, right bool) []string {
	var out []string
	if !right {
		for {
			s = strings.TrimLeftFunc(s, isPySpace)
			if s == "" {
				return out
			}
			if limit == 0 {
				return append(out, s)
			}
			i := strings.IndexFunc(s, isPySpace)
			if i < 0 {
				return append(out, s)
			}
			out = append(out, s[:i])
			s = s[i:]
			limit--
		}
	}
	for {
		s = strings.TrimRightFunc(s, isPySpace)
		if s == "" {
			break
		}
		if limit == 0 {
			out = append(out, s)
			break
		}
		i := strings.LastIndexFunc(s, isPySpace)
		if i < 0 {
			out = append(out, s)
			break
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		out = append(out, s[i+n:])
		s = s[:i+n]
		limit--
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func splitMethod(right bool) func(string, []jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
	return func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		limit := -1
		if m := param(a, kw, 1, "maxsplit"); given(m) {
			limit = int(m.AsInt())
		}
		sep := param(a, kw, 0, "sep")
		if !given(sep) {
			return strList(splitWhite(s, limit, right)), nil
		}
		if !sep.IsString() || sep.AsString() == "" {
			return jinja.Undefined(), fmt.Errorf("split: empty or non-string separator")
		}
		if !right || limit < 0 {
			return strList(strings.SplitN(s, sep.AsString(), limit+1-boolInt(limit < 0))), nil
		}
		var out []string
		for ; limit > 0; limit-- {
			i := strings.LastIndex(s, sep.AsString())
			if i < 0 {
				break
			}
			out = append([]string{s[i+len(sep.AsString()):]}, out...)
			s = s[:i]
		}
		return strList(append([]string{s}, out...)), nil
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// strMethods are Python str methods, with their usual arguments.
var strMethods = map[string]func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error){
	"strip": func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		f, err := stripArg(a, kw)
		return jinja.NewString(strings.TrimFunc(s, f)), err
	},
	"lstrip": func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		f, err := stripArg(a, kw)
		return jinja.NewString(strings.TrimLeftFunc(s, f)), err
	},
	"rstrip": func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		f, err := stripArg(a, kw)
		return jinja.NewString(strings.TrimRightFunc(s, f)), err
	},
	"split":  splitMethod(false),
	"rsplit": splitMethod(true),
	"splitlines": func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		keep := param(a, kw, 0, "keepends").IsTruthy()
		var out []string
		for s != "" {
			i := strings.IndexFunc(s, func(r rune) bool {
				return strings.ContainsRune("\n\r\v\f\x1c\x1d\x1e\u0085\u2028\u2029", r)
			})
			if i < 0 {
				out = append(out, s)
				break
			}
			_, n := utf8.DecodeRuneInString(s[i:])
			if s[i] == '\r' && strings.HasPrefix(s[i:], "\r\n") {
				n = 2
			}
			if keep {
				out = append(out, s[:i+n])
			} else {
				out = append(out, s[:i])
			}
			s = s[i+n:]
		}
		return strList(out), nil
	},
	"startswith": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		ps, err := affixes(arg(a, 0))
		for _, p := range ps {
			if strings.HasPrefix(s, p) {
				return jinja.NewBool(true), nil
			}
		}
		return jinja.NewBool(false), err
	},
	"endswith": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		ps, err := affixes(arg(a, 0))
		for _, p := range ps {
			if strings.HasSuffix(s, p) {
				return jinja.NewBool(true), nil
			}
		}
		return jinja.NewBool(false), err
	},
	"removeprefix": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewString(strings.TrimPrefix(s, pyStr(arg(a, 0)))), nil
	},
	"removesuffix": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewString(strings.TrimSuffix(s, pyStr(arg(a, 0)))), nil
	},
	"upper": func(s string, _ []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewString(strings.ToUpper(s)), nil
	},
	"lower": func(s string, _ []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewString(strings.ToLower(s)), nil
	},
	"title": func(s string, _ []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		// str.title: a cased character after an uncased one is
		// title-cased, the others are lower-cased.
		var b strings.Builder
		prevCased := false
		for _, r := range s {
			cased := unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r)
			switch {
			case cased && !prevCased:
				b.WriteRune(unicode.ToTitle(r))
			case cased:
				b.WriteRune(unicode.ToLower(r))
			default:
				b.WriteRune(r)
			}
			prevCased = cased
		}
		return jinja.NewString(b.String()), nil
	},
	"capitalize": func(s string, _ []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if s == "" {
			return jinja.NewString(""), nil
		}
		r, n := utf8.DecodeRuneInString(s)
		return jinja.NewString(string(unicode.ToTitle(r)) + strings.ToLower(s[n:])), nil
	},
	"replace": func(s string, a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
		n := -1
		if c := param(a, kw, 2, "count"); given(c) {
			n = int(c.AsInt())
		}
		return jinja.NewString(strings.Replace(s, pyStr(arg(a, 0)), pyStr(arg(a, 1)), n)), nil
	},
	"find": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewInt(int64(runeIndex(s, strings.Index(s, pyStr(arg(a, 0)))))), nil
	},
	"rfind": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewInt(int64(runeIndex(s, strings.LastIndex(s, pyStr(arg(a, 0)))))), nil
	},
	"count": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		return jinja.NewInt(int64(strings.Count(s, pyStr(arg(a, 0))))), nil
	},
	"join": func(s string, a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		v := arg(a, 0)
		var parts []string
		switch {
		case v.IsList():
			for _, it := range v.AsList().Items {
				if !it.IsString() {
					return jinja.Undefined(), fmt.Errorf("join: expected str instance, %s found", pyTypeName(it))
				}
				parts = append(parts, it.AsString())
			}
		case v.IsDict():
			parts = v.AsDict().OrderedKeys()
		case v.IsString():
			for _, r := range v.AsString() {
				parts = append(parts, string(r))
			}
		default:
			return jinja.Undefined(), fmt.Errorf("join: can only join an iterable")
		}
		return jinja.NewString(strings.Join(parts, s)), nil
	},
	"isdigit": boolOf(unicode.IsDigit),
	"isalpha": boolOf(unicode.IsLetter),
	"isalnum": boolOf(func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }),
	"isspace": boolOf(isPySpace),
	"islower": casedTest(unicode.IsUpper),
	"isupper": casedTest(unicode.IsLower),
}

// casedTest implements islower and isupper: at least one cased character
// and none for which bad holds.
func casedTest(bad func(rune) bool) func(string, []jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
	return func(s string, _ []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		cased := false
		for _, r := range s {
			if bad(r) || unicode.IsTitle(r) {
				return jinja.NewBool(false), nil
			}
			if unicode.IsUpper(r) || unicode.IsLower(r) {
				cased = true
			}
		}
		return jinja.NewBool(cased), nil
	}
}

// runeIndex converts a byte offset into s to a character offset (-1 stays).
func runeIndex(s string, i int) int {
	if i < 0 {
		return i
	}
	return utf8.RuneCountInString(s[:i])
}

// starKey marks the values made by __jamba_star and __jamba_kwstar.
const starKey = "\x00jamba-star"

func starMarker(kind string) fn {
	return func(a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		d := jinja.NewDict()
		d.AsDict().Set(starKey, jinja.NewString(kind))
		d.AsDict().Set("value", arg(a, 0))
		return d, nil
	}
}

// callStar calls args[0] with the remaining arguments, unpacking those
// marked by __jamba_star (a sequence, into positional arguments) and
// __jamba_kwstar (a mapping, into keyword arguments).
func callStar(a []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
	f := arg(a, 0)
	if !f.IsCallable() {
		return jinja.Undefined(), fmt.Errorf("'%s' object is not callable", pyTypeName(f))
	}
	var pos []jinja.Value
	kwargs := make(map[string]jinja.Value, len(kw))
	for k, v := range kw {
		kwargs[k] = v
	}
	for _, v := range a[1:] {
		kind := jinja.Undefined()
		if v.IsDict() {
			kind, _ = v.AsDict().Get(starKey)
		}
		if !kind.IsString() {
			pos = append(pos, v)
			continue
		}
		inner, _ := v.AsDict().Get("value")
		switch {
		case kind.AsString() == "*" && inner.IsList():
			pos = append(pos, inner.AsList().Items...)
		case kind.AsString() == "*" && inner.IsDict():
			for _, k := range inner.AsDict().Keys {
				pos = append(pos, jinja.NewString(k))
			}
		case kind.AsString() == "**" && inner.IsDict():
			d := inner.AsDict()
			for _, k := range d.Keys {
				kwargs[k] = d.Data[k]
			}
		default:
			return jinja.Undefined(), fmt.Errorf("argument after %s must be iterable, not %s", kind.AsString(), pyTypeName(inner))
		}
	}
	return f.AsCallable().Fn(pos, kwargs)
}

func raiseException(a []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	return jinja.Undefined(), &TemplateError{Message: pyStr(arg(a, 0))}
}

// strftime formats t as Python's strftime does in the C locale. It knows
// %a %A %b %B %c %d %e %f %H %I %j %m %M %p %S %u %w %x %X %y %Y %z %Z %%
// and the %-d style flags that drop padding.
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		pad := true
		if format[i] == '-' && i+1 < len(format) {
			pad = false
			i++
		}
		num := func(n, width int) {
			s := strconv.Itoa(n)
			if pad {
				for len(s) < width {
					s = "0" + s
				}
			}
			b.WriteString(s)
		}
		switch format[i] {
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'b', 'h':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'c':
			b.WriteString(strftime(t, "%a %b %e %H:%M:%S %Y"))
		case 'd':
			num(t.Day(), 2)
		case 'e':
			s := strconv.Itoa(t.Day())
			if pad && len(s) < 2 {
				s = " " + s
			}
			b.WriteString(s)
		case 'f':
			num(t.Nanosecond()/1000, 6)
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			num(h, 2)
		case 'j':
			num(t.YearDay(), 3)
		case 'm':
			num(int(t.Month()), 2)
		case 'M':
			num(t.Minute(), 2)
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'S':
			num(t.Second(), 2)
		case 'u':
			w := int(t.Weekday())
			if w == 0 {
				w = 7
			}
			b.WriteString(strconv.Itoa(w))
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'x':
			b.WriteString(strftime(t, "%m/%d/%y"))
		case 'X':
			b.WriteString(strftime(t, "%H:%M:%S"))
		case 'y':
			num(t.Year()%100, 2)
		case 'Y':
			num(t.Year(), 4)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			if !pad {
				b.WriteByte('-')
			}
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
