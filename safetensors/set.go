package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// File names of a Hugging Face checkpoint directory.
const (
	// SingleFileName is the file of an unsharded checkpoint.
	SingleFileName = "model.safetensors"
	// IndexFileName is the index of a sharded checkpoint.
	IndexFileName = "model.safetensors.index.json"
)

// maxIndexSize bounds the size of an index file read by OpenDir.
const maxIndexSize = MaxHeaderSize

// Set holds the tensors of a whole checkpoint, stored in one file or
// sharded over several. Its methods may be called from several goroutines
// at once, except Close.
type Set struct {
	files  []*File          // sorted by name
	shards []string         // file names as passed to open, parallel to files
	names  []string         // sorted tensor names
	where  map[string]*File // tensor name -> file holding it
	closed bool
}

// OpenDir opens the checkpoint in dir: the shards listed by
// dir/model.safetensors.index.json if it exists, else dir/model.safetensors.
func OpenDir(dir string) (*Set, error) {
	open := func(file string) (*File, error) { return Open(filepath.Join(dir, file)) }
	indexPath := filepath.Join(dir, IndexFileName)
	index, err := readIndexFile(indexPath)
	switch {
	case err == nil:
		return NewSet(index, open)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, newError(indexPath, "", err)
	}
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, newError(dir, "", fmt.Errorf("%w: neither %s nor %s in the directory", ErrNotFound, IndexFileName, SingleFileName))
		}
		return nil, newError(single, "", err)
	}
	return NewSet(nil, open)
}

// readIndexFile reads an index file, refusing one larger than maxIndexSize.
func readIndexFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrInvalidIndex)
	}
	if fi.Size() > maxIndexSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidIndex, fi.Size(), maxIndexSize)
	}
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+1))
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, err
	}
	if buf.Len() > maxIndexSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrInvalidIndex, maxIndexSize)
	}
	return buf.Bytes(), nil
}

// NewSet builds a Set from an index (the contents of
// model.safetensors.index.json) and a function opening a shard by its file
// name. With a nil index the set is the single file "model.safetensors".
//
// Every shard name in the index is checked before anything is opened: it
// must be a plain file name ending in ".safetensors", without separators,
// "..", NUL or a drive. Then every tensor listed must be in its shard, no
// tensor may be in two shards, and no shard may hold an unlisted tensor.
// On error, the files opened so far are closed.
func NewSet(indexJSON []byte, open func(file string) (*File, error)) (*Set, error) {
	var weightMap map[string]string
	var fileNames []string
	if indexJSON == nil {
		fileNames = []string{SingleFileName}
	} else {
		var err error
		weightMap, err = ParseIndex(indexJSON)
		if err != nil {
			return nil, err
		}
		for _, file := range weightMap {
			fileNames = append(fileNames, file)
		}
		slices.Sort(fileNames)
		fileNames = slices.Compact(fileNames)
	}

	s := &Set{where: make(map[string]*File)}
	fail := func(err error) (*Set, error) {
		s.Close()
		return nil, err
	}
	for _, name := range fileNames {
		f, err := open(name)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				err = newError(name, "", err)
			}
			return fail(err)
		}
		if f == nil {
			return fail(newError(name, "", fmt.Errorf("%w: open returned no file", ErrNotFound)))
		}
		s.files = append(s.files, f)
		s.shards = append(s.shards, name)
		for _, t := range f.hdr.names {
			if prev, dup := s.where[t]; dup {
				return fail(newError(f.name, t, fmt.Errorf("%w: also in %s", ErrDuplicateTensor, prev.name)))
			}
			s.where[t] = f
			s.names = append(s.names, t)
		}
	}
	if weightMap != nil {
		for i, f := range s.files {
			for _, t := range f.hdr.names {
				listed, ok := weightMap[t]
				if !ok {
					return fail(newError(f.name, t, ErrUnlistedTensor))
				}
				if listed != fileNames[i] {
					return fail(newError(f.name, t, fmt.Errorf("%w: index lists it in %s", ErrUnlistedTensor, listed)))
				}
			}
		}
	}
	for t, file := range weightMap {
		if _, ok := s.where[t]; !ok {
			return fail(newError(file, t, ErrMissingTensor))
		}
	}
	slices.Sort(s.names)
	return s, nil
}

// ParseIndex parses the contents of a model.safetensors.index.json and
// returns its weight_map (tensor name -> shard file name), after checking
// that the JSON has no duplicate keys and that every shard name is a plain
// "*.safetensors" file name (see CheckShardName).
func ParseIndex(indexJSON []byte) (map[string]string, error) {
	bad := func(err error) (map[string]string, error) { return nil, newError(IndexFileName, "", err) }
	if !utf8.Valid(indexJSON) {
		return bad(fmt.Errorf("%w: not valid UTF-8", ErrInvalidIndex))
	}
	dec := json.NewDecoder(bytes.NewReader(indexJSON))
	dec.UseNumber()
	if err := expectDelim(dec, '{', "index", ErrInvalidIndex); err != nil {
		return bad(err)
	}
	seen := make(map[string]bool)
	var weightMap map[string]string
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return bad(err)
		}
		if seen[key] {
			return bad(fmt.Errorf("%w: %q", ErrDuplicateKey, key))
		}
		seen[key] = true
		if key != "weight_map" {
			if err := skipValue(dec, 0); err != nil {
				return bad(err)
			}
			continue
		}
		weightMap, err = readStringMap(dec)
		if err != nil {
			if errors.Is(err, ErrInvalidMetadata) {
				err = fmt.Errorf("%w: weight_map: %v", ErrInvalidIndex, err)
			}
			return bad(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return bad(fmt.Errorf("%w: %v", ErrInvalidIndex, err))
	}
	rest := indexJSON[dec.InputOffset():]
	if bytes.ContainsFunc(rest, func(r rune) bool { return !isJSONSpace(r) }) {
		return bad(fmt.Errorf("%w: unexpected data after the JSON object", ErrInvalidIndex))
	}
	if len(weightMap) == 0 {
		return bad(fmt.Errorf("%w: no weight_map, or an empty one", ErrInvalidIndex))
	}
	for t, file := range weightMap {
		if err := CheckShardName(file); err != nil {
			return nil, newError(IndexFileName, t, err)
		}
	}
	return weightMap, nil
}

// CheckShardName reports whether name may be opened as a shard of a
// checkpoint directory: a non-empty local file name ending in
// ".safetensors", with no path separator, "..", NUL, colon or control
// character. The error wraps ErrInvalidFileName.
func CheckShardName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %q %s", ErrInvalidFileName, name, why) }
	switch {
	case name == "":
		return bad("is empty")
	case strings.ContainsAny(name, `/\`):
		return bad("contains a path separator")
	case strings.Contains(name, ".."):
		return bad(`contains ".."`)
	case strings.ContainsRune(name, 0):
		return bad("contains NUL")
	case strings.ContainsRune(name, ':'):
		return bad("contains a colon")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return bad("contains a control character")
	case filepath.IsAbs(name):
		return bad("is absolute")
	case !strings.HasSuffix(name, ".safetensors") || name == ".safetensors":
		return bad(`does not end in ".safetensors"`)
	case !filepath.IsLocal(name):
		return bad("is not a local file name")
	}
	return nil
}

// Names returns the names of all tensors of the set, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Len returns the number of tensors.
func (s *Set) Len() int { return len(s.names) }

// Files returns the file names of the set's files, sorted, as the index
// lists them and as they were passed to the open function (for OpenDir,
// names relative to the directory).
func (s *Set) Files() []string { return slices.Clone(s.shards) }

// Info returns the description of the named tensor and whether it exists.
func (s *Set) Info(name string) (TensorInfo, bool) {
	f, ok := s.where[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// FileOf returns the file holding the named tensor, or nil.
func (s *Set) FileOf(name string) *File { return s.where[name] }

// Tensor returns the named tensor; its Data aliases the file holding it
// and stays valid until Close.
func (s *Set) Tensor(name string) (Tensor, error) {
	if s.closed {
		return Tensor{}, newError("", name, ErrClosed)
	}
	f, ok := s.where[name]
	if !ok {
		return Tensor{}, newError("", name, ErrNotFound)
	}
	return f.Tensor(name)
}

// Close closes every file of the set and returns the first error.
func (s *Set) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Release tells the operating system that the named tensor's bytes are not
// needed for now (a caller that made its own converted copy, such as a
// quantized one, calls it to keep resident memory at one copy). The data
// stays valid: a mapped file's pages are read again on the next access. It
// does nothing for files held in memory by OpenBytes.
func (s *Set) Release(name string) {
	f, ok := s.where[name]
	if !ok || f.unmap == nil || s.closed {
		return
	}
	t, err := f.Tensor(name)
	if err != nil {
		return
	}
	dropPages(t.Data)
}
