package train

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/tokenizer"
)

// TestLineRows checks the rows of --rows lines on two pieces of the Go
// corpus with the gostd tokenizer: every row is what encoding the text from
// a line start (indentation dropped) as a prompt gives, cut to seq tokens,
// with end-of-text where it reaches the end of its file; an epoch covers the
// text with about as many tokens as the stream; the order is a function of
// the seed and the epoch.
func TestLineRows(t *testing.T) {
	tok, err := tokenizer.Load(testutil.Fixture(t, "tokenizers/gostd/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(testutil.Fixture(t, "corpus/gostd_val.txt"))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{string(raw[:30000]), string(raw[30000:41000])}
	bos, _ := tok.BOS()
	eos, _ := tok.EOS()
	stream := TokenizeTexts(texts, tok, eos)
	const seq, batch = 64, 5
	newLoader := func(seed uint64) *Loader {
		l, err := NewLoader(stream, seq, batch, seed)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetLines(texts, tok, eos); err != nil {
			t.Fatal(err)
		}
		return l
	}
	n := newLoader(3).RowsPerEpoch()
	// The grid is spaced by seq-1 tokens' worth of bytes; line starts push
	// each row's start forward by at most a line, so an epoch holds about
	// len(stream)/(seq-1) rows (±20% covers lines of up to a fifth of a row).
	if want := len(stream) / (seq - 1); n < want*8/10 || n > want*12/10 {
		t.Errorf("%d rows per epoch, want about %d", n, want)
	}
	starts := map[lineRef]bool{}
	covered := make([][]bool, len(texts))
	for f := range texts {
		covered[f] = make([]bool, len(texts[f]))
	}
	// Check every row of epoch 0 directly against a full encoding.
	l0 := newLoader(3)
	l0.prepare()
	for k, ref := range l0.refs {
		text := texts[ref.file]
		s := int(ref.start)
		if s > 0 && text[s-1] != '\n' && text[s-1] != ' ' && text[s-1] != '\t' && text[s-1] != '\r' {
			t.Fatalf("row %d starts at byte %d of file %d, not at a line start: %q", k, s, ref.file, text[max(0, s-20):s+20])
		}
		if strings.TrimLeft(text[s:s+1], " \t\r\n") == "" {
			t.Fatalf("row %d starts with white space", k)
		}
		if k > 0 && l0.refs[k-1] == ref {
			t.Fatalf("row %d repeats row %d", k, k-1)
		}
		starts[ref] = true
		row := l0.lines.row(ref, seq)
		want := tok.Encode(text[s:], true)
		if len(want) < seq {
			want = append(want, eos)
		}
		want = want[:min(len(want), seq)]
		if !slices.Equal(row, want) {
			t.Fatalf("row %d (file %d, byte %d):\n got %v\nwant %v", k, ref.file, s, row, want)
		}
		if row[0] != bos {
			t.Fatalf("row %d starts with %d, not BOS", k, row[0])
		}
		// The bytes this row's tokens cover (its text decodes to a prefix
		// of the file from s on).
		body := row[1:]
		if body[len(body)-1] == eos {
			body = body[:len(body)-1]
		}
		dec := tok.Decode(body, false)
		if !strings.HasPrefix(text[s:], dec) {
			t.Fatalf("row %d decodes to %q, not a prefix of the text at its start", k, dec[:min(len(dec), 60)])
		}
		for i := s; i < s+len(dec); i++ {
			covered[ref.file][i] = true
		}
	}
	if len(starts) != n {
		t.Errorf("%d distinct rows of %d", len(starts), n)
	}
	// Rows tile the text: only white space and the ends of overlong rows'
	// neighbours stay uncovered.
	var total, missed int
	for f := range texts {
		for i, c := range covered[f] {
			total++
			if !c && !strings.ContainsRune(" \t\r\n", rune(texts[f][i])) {
				missed++
			}
		}
	}
	if float64(missed) > 0.1*float64(total) {
		t.Errorf("epoch 0 leaves %d of %d bytes uncovered", missed, total)
	}
	// The order is a function of (seed, epoch): a fresh loader repeats it,
	// another seed or epoch changes it, and epoch 1 shifts the grid.
	a, b, c := newLoader(3), newLoader(3), newLoader(4)
	ra, rb, rc := a.Next(), b.Next(), c.Next()
	for i := range ra {
		if !slices.Equal(ra[i], rb[i]) {
			t.Fatal("two loaders with one seed gave different rows")
		}
	}
	same := true
	for i := range ra {
		same = same && slices.Equal(ra[i], rc[i])
	}
	if same {
		t.Error("seeds 3 and 4 gave the same rows")
	}
	a.Epoch, a.Pos = 1, 0
	a.prepare()
	shifted := 0
	for _, ref := range a.refs {
		if !starts[ref] {
			shifted++
		}
	}
	if shifted < len(a.refs)/2 {
		t.Errorf("epoch 1 reuses %d of %d row starts of epoch 0", len(a.refs)-shifted, len(a.refs))
	}
	// Files shorter than the grid's spacing: each still starts a row in
	// every epoch, whatever the epoch's offset.
	small := []string{"a := 1\n", "\n\tb()\n", "// c\nd\n", "x"}
	sl, err := NewLoader(TokenizeTexts(small, tok, eos), 4, 2, 9)
	if err != nil {
		t.Fatal(err)
	}
	if err := sl.SetLines(small, tok, eos); err != nil {
		t.Fatal(err)
	}
	for e := range 6 {
		sl.Epoch, sl.Pos = e, 0
		sl.prepare()
		files := map[int32]bool{}
		for _, ref := range sl.refs {
			files[ref.file] = true
		}
		if len(files) != len(small) {
			t.Errorf("epoch %d: rows from %d of %d files (%v)", e, len(files), len(small), sl.refs)
		}
	}
	if err := sl.SetLines([]string{" \n\t\n"}, tok, eos); err == nil {
		t.Error("white space alone was accepted for line rows")
	}
	// A run with line rows and no texts stops with an error, not a panic.
	cfg := tinyConfig(t, nil)
	o := trainOpts()
	o.Rows = RowsLines
	tr, err := NewTrainer(InitParams(cfg, 1), patternTokens(400, cfg.VocabSize, 1), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(); err == nil || !strings.Contains(err.Error(), "SetText") {
		t.Errorf("a line-row step without texts: %v", err)
	}
	o.Rows = "words"
	if err := o.Validate(); err == nil {
		t.Error(`rows "words" was accepted`)
	}
}

// FuzzLineRows: line rows over arbitrary text (any bytes, any line
// structure) never panic, and every row starts with BOS, holds at most seq
// tokens, all in the vocabulary, and comes from a line start.
func FuzzLineRows(f *testing.F) {
	for _, s := range []string{"", "\n\n\n", "a", "func f() {\n\treturn\n}\n", "\xff\xfe\n\t\t\n日本語\n", strings.Repeat("x", 3000)} {
		f.Add(s, "second file\n", uint8(8))
	}
	tok, err := tokenizer.Load(testutil.Fixture(f, "tokenizers/gostd/tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	bos, _ := tok.BOS()
	eos, _ := tok.EOS()
	V := tok.VocabSize()
	f.Fuzz(func(t *testing.T, a, b string, seqByte uint8) {
		// Longer texts only repeat the same line structure, and cost the
		// fuzzer executions.
		if len(a) > 4096 || len(b) > 4096 {
			return
		}
		seq := 2 + int(seqByte)%64
		texts := []string{a, b}
		stream := TokenizeTexts(texts, tok, eos)
		l, err := NewLoader(stream, seq, 3, 1)
		if err != nil {
			return // fewer tokens than a row
		}
		if err := l.SetLines(texts, tok, eos); err != nil {
			return
		}
		for range 2 * max(1, l.RowsPerEpoch()) / 3 {
			for _, row := range l.Next() {
				if len(row) == 0 || len(row) > seq || row[0] != bos {
					t.Fatalf("row %v (seq %d)", row, seq)
				}
				for _, id := range row {
					if id < 0 || id >= V {
						t.Fatalf("id %d outside the vocabulary", id)
					}
				}
			}
		}
	})
}
