package train

import (
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	parts := make([][]int, len(files))
	errs := make([]error, len(files))
	parallel(len(files), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			text, err := ReadText(files[i])
			if err != nil {
				errs[i] = err
				continue
			}
			parts[i] = enc.Encode(text, false)
		}
	})
	var out []int32
	for i, p := range parts {
		if errs[i] != nil {
			return nil, errs[i]
		}
		for _, id := range p {
			out = append(out, int32(id))
		}
		if sep >= 0 {
			out = append(out, int32(sep))
		}
	}
	return out, nil
}

// Loader cuts a token stream into rows of Seq tokens and serves them in
// batches of Batch rows, in a random order that changes every epoch. The
// order of epoch e is a pure function of (Seed, e): a permutation of the
// rows and, from the second epoch on, a random offset in [0, Seq) at which
// the cutting starts, so windows differ between epochs. The position
// (Epoch, Pos) is therefore the loader's whole random state.
type Loader struct {
	Tokens     []int32
	Seq, Batch int
	Seed       uint64
	Epoch      int // current epoch, from 0
	Pos        int // rows of the current epoch already served

	perm      []int
	offset    int
	permEpoch int
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
	if l.Epoch > 0 {
		l.offset = rng.IntN(l.Seq)
		if (len(l.Tokens)-l.offset)/l.Seq == 0 {
			l.offset = 0
		}
	}
	l.perm = rng.Perm((len(l.Tokens) - l.offset) / l.Seq)
	l.permEpoch = l.Epoch
}

// Next returns the next batch.
func (l *Loader) Next() [][]int {
	rows := make([][]int, l.Batch)
	for i := range rows {
		l.prepare()
		if l.Pos >= len(l.perm) {
			l.Epoch++
			l.Pos = 0
			l.prepare()
		}
		start := l.offset + l.perm[l.Pos]*l.Seq
		row := make([]int, l.Seq)
		for j, id := range l.Tokens[start : start+l.Seq] {
			row[j] = int(id)
		}
		rows[i] = row
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
