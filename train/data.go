package train

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// Encoder turns text into token ids; *tokenizer.Tokenizer is one.
type Encoder interface {
	Encode(text string, addSpecial bool) []int
}

// ListFiles expands paths into the files they name: files as given, folders
// walked recursively in lexical order, skipping names that start with a dot.
func ListFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("train: data: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("train: data: %w", err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("train: data: folder %s holds no files", p)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// ReadText returns the contents of a file, decompressed when its name ends
// in ".gz".
func ReadText(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("train: data: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", fmt.Errorf("train: data: %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("train: data: %s: %w", path, err)
	}
	return string(data), nil
}

// Tokenize reads every file and encodes its whole text without special
// tokens, appending sep after each file when sep ≥ 0 (so that documents
// are separated by end-of-text in the packed stream). Files are encoded in
// parallel; the result is in file order.
func Tokenize(files []string, enc Encoder, sep int) ([]int32, error) {
	texts, err := ReadTexts(files)
	if err != nil {
		return nil, err
	}
	return TokenizeTexts(texts, enc, sep), nil
}

// ReadTexts reads every file (see ReadText), in parallel.
func ReadTexts(files []string) ([]string, error) {
	texts := make([]string, len(files))
	errs := make([]error, len(files))
	parallel(len(files), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			texts[i], errs[i] = ReadText(files[i])
		}
	})
	return texts, errors.Join(errs...)
}

// TokenizeTexts is Tokenize over texts already read.
func TokenizeTexts(texts []string, enc Encoder, sep int) []int32 {
	parts := make([][]int, len(texts))
	parallel(len(texts), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			parts[i] = enc.Encode(texts[i], false)
		}
	})
	var out []int32
	for _, p := range parts {
		for _, id := range p {
			out = append(out, int32(id))
		}
		if sep >= 0 {
			out = append(out, int32(sep))
		}
	}
	return out
}

// Loader cuts a token stream into rows of Seq tokens and serves them in
// batches of Batch rows, in a random order that changes every epoch. The
// order of epoch e is a pure function of (Seed, e): a permutation of the
// rows and, from the second epoch on, a random offset in [0, Seq) at which
// the cutting starts, so windows differ between epochs. The position
// (Epoch, Pos) is therefore the loader's whole random state.
type Loader struct {
	Tokens []int32
	// Mask, when set (one entry per token of Tokens), marks the tokens that
	// are loss targets; Next then leaves each row's share of it in
	// RowMask.
	Mask       []bool
	RowMask    [][]bool
	Seq, Batch int
	Seed       uint64
	Epoch      int // current epoch, from 0
	Pos        int // rows of the current epoch already served

	perm      []int
	offset    int
	permEpoch int

	lines *lineRows // nil: rows are cut from Tokens
	refs  []lineRef // the current epoch's rows in line mode
}

// NewLoader returns a loader at the start of epoch 0. It fails when the
// stream holds fewer than Seq tokens.
func NewLoader(tokens []int32, seq, batch int, seed uint64) (*Loader, error) {
	if seq < 2 || batch < 1 {
		return nil, fmt.Errorf("train: sequence length %d and batch size %d: need at least 2 and 1", seq, batch)
	}
	if len(tokens) < seq {
		return nil, fmt.Errorf("train: the training data has %d tokens, fewer than one sequence of %d", len(tokens), seq)
	}
	return &Loader{Tokens: tokens, Seq: seq, Batch: batch, Seed: seed, permEpoch: -1}, nil
}

// RowsPerEpoch is the number of rows in the current epoch.
func (l *Loader) RowsPerEpoch() int {
	l.prepare()
	return len(l.perm)
}

func (l *Loader) prepare() {
	if l.permEpoch == l.Epoch {
		return
	}
	rng := rand.New(rand.NewPCG(l.Seed, uint64(l.Epoch)))
	l.offset = 0
	if l.lines != nil {
		off := 0
		if l.Epoch > 0 {
			off = rng.IntN(l.lines.spacing)
		}
		l.refs = l.lines.grid(off)
		l.perm = rng.Perm(len(l.refs))
		l.permEpoch = l.Epoch
		return
	}
	if l.Epoch > 0 {
		l.offset = rng.IntN(l.Seq)
		if (len(l.Tokens)-l.offset)/l.Seq == 0 {
			l.offset = 0
		}
	}
	l.perm = rng.Perm((len(l.Tokens) - l.offset) / l.Seq)
	l.permEpoch = l.Epoch
}

// checkPos reports a position past the end of the current epoch's rows
// (a corrupted or foreign training state).
func (l *Loader) checkPos() error {
	if l.Epoch < 0 || l.Pos < 0 {
		return fmt.Errorf("epoch %d, pos %d: negative", l.Epoch, l.Pos)
	}
	if n := l.RowsPerEpoch(); l.Pos > n {
		return fmt.Errorf("pos %d past the %d rows of epoch %d", l.Pos, n, l.Epoch)
	}
	return nil
}

// Next returns the next batch.
func (l *Loader) Next() [][]int {
	rows := make([][]int, l.Batch)
	l.RowMask = nil
	if l.Mask != nil {
		l.RowMask = make([][]bool, l.Batch)
	}
	for i := range rows {
		l.prepare()
		if l.Pos >= len(l.perm) {
			l.Epoch++
			l.Pos = 0
			l.prepare()
		}
		if l.lines != nil {
			// Every epoch has a row: SetLines found a non-blank line, and
			// every file with one starts a row (grid).
			rows[i] = l.lines.row(l.refs[l.perm[l.Pos]], l.Seq)
			l.Pos++
			continue
		}
		start := l.offset + l.perm[l.Pos]*l.Seq
		row := make([]int, l.Seq)
		for j, id := range l.Tokens[start : start+l.Seq] {
			row[j] = int(id)
		}
		rows[i] = row
		if l.Mask != nil {
			l.RowMask[i] = l.Mask[start : start+l.Seq]
		}
		l.Pos++
	}
	return rows
}

// Windows cuts the first maxTokens tokens of a stream (all of them when
// maxTokens ≤ 0) into non-overlapping rows of seq tokens, dropping a last
// partial one, as perplexity evaluation does.
func Windows(tokens []int32, seq, maxTokens int) [][]int {
	if maxTokens > 0 && maxTokens < len(tokens) {
		tokens = tokens[:maxTokens]
	}
	var rows [][]int
	for s := 0; s+seq <= len(tokens); s += seq {
		row := make([]int, seq)
		for j, id := range tokens[s : s+seq] {
			row[j] = int(id)
		}
		rows = append(rows, row)
	}
	return rows
}

// WindowMasks cuts a loss mask aligned with a token stream the way Windows
// cuts the stream.
func WindowMasks(mask []bool, seq, maxTokens int) [][]bool {
	if maxTokens > 0 && maxTokens < len(mask) {
		mask = mask[:maxTokens]
	}
	var rows [][]bool
	for s := 0; s+seq <= len(mask); s += seq {
		rows = append(rows, mask[s:s+seq])
	}
	return rows
}

// Row layouts of a run (Options.Rows).
const (
	RowsStream = "stream" // consecutive windows of the packed token stream
	RowsLines  = "lines"  // rows that begin at line starts, encoded as prompts are
)

// lineRef is where a line-mode row begins: a file and a byte offset in it.
type lineRef struct {
	file  int32
	start int32
}

// lineRows forms rows that begin at the start of a line and are encoded the
// way a prompt is: the post-processor's special tokens (BOS) first, then
// the text from that line on, with the line's indentation and any blank
// lines before it dropped. A model trained on them sees, at the start of
// every row, exactly what it sees when prompted with a fragment of code,
// whereas a window cut from the packed stream starts anywhere, without
// BOS, and with the normalizer's leading "▁" never attached to the first
// word (so "func" at the start of a prompt, encoded "▁func", would be a
// token the model only met in the middle of lines).
type lineRows struct {
	texts   []string
	starts  [][]int32 // per file, the byte offsets of its non-blank line starts
	enc     Encoder
	sep     int // appended when a row reaches the end of its file (< 0: none)
	spacing int // bytes between the grid points that pick an epoch's rows
}

// SetLines switches the loader to line rows over texts (the training files'
// contents, in the order their tokens were packed into Tokens) encoded with
// enc; sep (≥ 0) ends a row that reaches the end of its file. The rows of
// an epoch start at the first line start at or after each point of a grid
// spaced so that an epoch holds about as many tokens as Tokens; from the
// second epoch on the grid is shifted by a random offset, as the stream's
// windows are. The order stays a pure function of (Seed, Epoch).
func (l *Loader) SetLines(texts []string, enc Encoder, sep int) error {
	total := 0
	lr := &lineRows{texts: texts, enc: enc, sep: sep, starts: make([][]int32, len(texts))}
	for i, t := range texts {
		if len(t) > math.MaxInt32 {
			return fmt.Errorf("train: data: file %d is %d bytes; line rows need files under 2 GiB", i, len(t))
		}
		total += len(t)
		var st []int32
		for p := 0; p < len(t); {
			q := p
			for q < len(t) && (t[q] == ' ' || t[q] == '\t' || t[q] == '\r' || t[q] == '\n') {
				q++
			}
			if q < len(t) && (len(st) == 0 || int(st[len(st)-1]) != q) {
				st = append(st, int32(q))
			}
			nl := strings.IndexByte(t[q:], '\n')
			if nl < 0 {
				break
			}
			p = q + nl + 1
		}
		lr.starts[i] = st
	}
	lines := 0
	for _, st := range lr.starts {
		lines += len(st)
	}
	if lines == 0 || len(l.Tokens) == 0 {
		return errors.New("train: data: no line with anything but white space to start a row at")
	}
	// A row holds Seq-1 tokens of text after BOS; spacing the grid by that
	// many tokens' worth of bytes makes an epoch about as long as the stream.
	lr.spacing = max(1, int(float64(l.Seq-1)*float64(total)/float64(len(l.Tokens))))
	l.lines = lr
	l.permEpoch = -1
	return l.checkPos()
}

// grid returns the rows of one epoch: for every file, the first line start
// at or after each of off, off+spacing, off+2·spacing, … (each line once);
// a file where none falls (no line starts at or after off) starts one row
// at its first line, so that every file with a non-blank line has a row in
// every epoch.
func (r *lineRows) grid(off int) []lineRef {
	var refs []lineRef
	for f, st := range r.starts {
		if len(st) == 0 {
			continue
		}
		j := 0
		g0 := off
		if int(st[len(st)-1]) < off {
			g0 = 0
		}
		for g := g0; g < len(r.texts[f]) && j < len(st); g += r.spacing {
			for j < len(st) && int(st[j]) < g {
				j++
			}
			if j == len(st) {
				break
			}
			if n := len(refs); n > 0 && refs[n-1] == (lineRef{int32(f), st[j]}) {
				continue
			}
			refs = append(refs, lineRef{int32(f), st[j]})
		}
	}
	return refs
}

// row encodes the row that starts at ref: at most seq tokens.
func (r *lineRows) row(ref lineRef, seq int) []int {
	text := r.texts[ref.file][ref.start:]
	// Encode a prefix long enough for seq tokens and a margin, so that the
	// tokens kept do not depend on where the prefix was cut (BPE merges are
	// local); grow it for text that packs many bytes into a token.
	const margin = 8
	n := min(len(text), 8*seq)
	for {
		for n < len(text) && !utf8.RuneStart(text[n]) {
			n++
		}
		ids := r.enc.Encode(text[:n], true)
		if n == len(text) {
			if len(ids) < seq && r.sep >= 0 {
				ids = append(ids, r.sep)
			}
			return ids[:min(len(ids), seq)]
		}
		if len(ids) >= seq+margin {
			return ids[:seq]
		}
		n = min(len(text), 2*n)
	}
}
