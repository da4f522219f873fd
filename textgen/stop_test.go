package textgen

import (
	"strings"
	"testing"
)

// maxStop bounds the fuzzed stop strings, as servers bound them.
const maxStop = 64

// pieces cuts text into pieces whose lengths the bytes of cuts give (the
// low four bits plus one; the rest of the text after the last).
func pieces(text string, cuts []byte) (out []string) {
	for _, c := range cuts {
		if text == "" {
			return out
		}
		n := min(len(text), int(c&15)+1)
		out, text = append(out, text[:n]), text[n:]
	}
	if text != "" {
		out = append(out, text)
	}
	return out
}

func TestStopMatcher(t *testing.T) {
	for _, tc := range []struct {
		text  string
		stops []string
		parts []byte
		want  string
		stop  bool
	}{
		{"hello world", []string{"wor"}, []byte{1, 2, 3}, "hello ", true},
		{"hello world", []string{"xyz"}, []byte{4}, "hello world", false},
		{"abcd", []string{"abcd", "bc"}, []byte{2, 2}, "a", true}, // "bc" completes first
		{"abcd", []string{"abcd", "bc"}, []byte{3}, "a", true},
		{"abab", []string{"bab", "ab"}, []byte{0, 0, 0, 0}, "", true},
		{"aab", []string{"ab"}, []byte{0, 0, 0}, "a", true},
		{"héllo", []string{"é"}, []byte{1, 1}, "h", true},
		{"stop at the end:END", []string{"END"}, []byte{15, 2, 2}, "stop at the end:", true},
		{"partial EN", []string{"END"}, []byte{8, 2}, "partial EN", false},
	} {
		m := StopMatcher{Stops: tc.stops}
		var out strings.Builder
		stopped := false
		for _, p := range pieces(tc.text, tc.parts) {
			s, st := m.Push(p)
			out.WriteString(s)
			if st {
				stopped = true
				break
			}
		}
		if !stopped {
			out.WriteString(m.Flush())
		}
		if out.String() != tc.want || stopped != tc.stop {
			t.Errorf("%q with %q: got %q (%v), want %q (%v)", tc.text, tc.stops, out.String(), stopped, tc.want, tc.stop)
		}
		if ref, rs := CutAtStop(tc.text, tc.stops); ref != tc.want || rs != tc.stop {
			t.Errorf("reference for %q: %q (%v)", tc.text, ref, rs)
		}
	}
}

// FuzzStopMatcher checks that however the text is cut into pieces, the
// matcher releases exactly the one-shot result, never a byte of a stop
// string, and never a byte twice.
func FuzzStopMatcher(f *testing.F) {
	f.Add("hello world", "wor", "", []byte{1, 2, 3})
	f.Add("abcd", "abcd", "bc", []byte{2, 2})
	f.Add("ababab", "bab", "abb", []byte{0, 1, 0, 2})
	f.Add("日本語のテキスト", "語の", "ト", []byte{2, 5, 1})
	f.Fuzz(func(t *testing.T, text, s1, s2 string, cuts []byte) {
		var stops []string
		for _, s := range []string{s1, s2} {
			if s != "" && len(s) <= maxStop {
				stops = append(stops, s)
			}
		}
		want, wantStop := CutAtStop(text, stops)
		m := StopMatcher{Stops: stops}
		var out strings.Builder
		stopped := false
		for _, p := range pieces(text, cuts) {
			s, st := m.Push(p)
			out.WriteString(s)
			if !strings.HasPrefix(want, out.String()) {
				t.Fatalf("released %q, which is not a prefix of %q", out.String(), want)
			}
			if st {
				stopped = true
				break
			}
		}
		if !stopped {
			out.WriteString(m.Flush())
		}
		if out.String() != want || stopped != wantStop {
			t.Fatalf("text %q stops %q: streamed %q (%v), one-shot %q (%v)", text, stops, out.String(), stopped, want, wantStop)
		}
	})
}
