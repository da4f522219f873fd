package safetensors

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/jamba-go/jamba/internal/atomicfile"
)

// Writer streams tensors into a safetensors file, one tensor at a time, so
// that a large checkpoint never needs to be in memory at once. The header
// is computed from the tensor descriptions given up front; the tensors must
// then be written in that order. Errors are sticky: after the first one,
// every call returns it.
type Writer struct {
	path  string // final path; "" for NewWriter
	file  *atomicfile.File
	bw    *bufio.Writer
	infos []TensorInfo
	next  int // index of the next tensor to write
	buf   []byte
	err   error
	done  bool
}

// Create starts a safetensors file at path. infos lists the tensors in the
// order they will be written; their Begin and End are ignored and
// computed. A nil metadata map means {"format": "pt"}; otherwise "format":
// "pt" is added unless metadata sets "format" itself (the Hugging Face
// loaders require it).
//
// The data goes to a temporary file beside path, which Close syncs and
// renames to path once every tensor has been written, so an interrupted
// write never leaves a partial file at path. A path that names a device or
// a pipe (/dev/stdout) is written through; one that names a folder or a
// socket is refused (see package atomicfile).
//
// Tensors are laid out contiguously in the given order. To keep every
// tensor aligned to its element size (which the zero-copy views need),
// list them by decreasing dtype size.
func Create(path string, infos []TensorInfo, metadata map[string]string) (*Writer, error) {
	hdr, infos, err := buildHeader(infos, metadata)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.File = path
		}
		return nil, err
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, newError(path, "", err)
	}
	w := &Writer{path: path, file: f, bw: bufio.NewWriterSize(f, 1<<20), infos: infos}
	if _, err := w.bw.Write(hdr); err != nil {
		w.abort(err)
		return nil, w.err
	}
	return w, nil
}

// NewWriter is like Create but streams the file to dst. Close flushes but
// does not close dst.
func NewWriter(dst io.Writer, infos []TensorInfo, metadata map[string]string) (*Writer, error) {
	hdr, infos, err := buildHeader(infos, metadata)
	if err != nil {
		return nil, err
	}
	w := &Writer{bw: bufio.NewWriterSize(dst, 1<<16), infos: infos}
	if _, err := w.bw.Write(hdr); err != nil {
		return nil, newError("", "", err)
	}
	return w, nil
}

// abort records err, and for a file writer removes the temporary file.
func (w *Writer) abort(err error) {
	if w.err != nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		err = newError(w.path, "", err)
	}
	w.err = err
	if w.file != nil {
		w.file.Abort()
		w.file = nil
	}
}

// Infos returns the tensors to be written, with their computed offsets.
func (w *Writer) Infos() []TensorInfo {
	out := make([]TensorInfo, len(w.infos))
	for i, t := range w.infos {
		out[i] = t.clone()
	}
	return out
}

// expect checks that name is the next tensor and returns its description.
func (w *Writer) expect(name string) (TensorInfo, error) {
	if w.err != nil {
		return TensorInfo{}, w.err
	}
	if w.done {
		return TensorInfo{}, newError(w.path, name, ErrClosed)
	}
	if w.next >= len(w.infos) {
		err := newError(w.path, name, fmt.Errorf("%w: all %d tensors already written", ErrWriteOrder, len(w.infos)))
		w.abort(err)
		return TensorInfo{}, err
	}
	t := w.infos[w.next]
	if t.Name != name {
		err := newError(w.path, name, fmt.Errorf("%w: expected %q next", ErrWriteOrder, t.Name))
		w.abort(err)
		return TensorInfo{}, err
	}
	return t, nil
}

// Write writes the bytes of the named tensor, which must be the next one in
// the order given to Create and hold exactly its byte size.
func (w *Writer) Write(name string, data []byte) error {
	t, err := w.expect(name)
	if err != nil {
		return err
	}
	if int64(len(data)) != t.End-t.Begin {
		err := newError(w.path, name, fmt.Errorf("%w: %s%v needs %d bytes, got %d", ErrSizeMismatch, t.DType, t.Shape, t.End-t.Begin, len(data)))
		w.abort(err)
		return err
	}
	if _, err := w.bw.Write(data); err != nil {
		w.abort(newError(w.path, name, err))
		return w.err
	}
	w.next++
	return nil
}

// WriteFloat32 encodes v in the dtype of the named tensor (F64, F32, F16 or
// BF16, rounding to nearest even) and writes it, in bounded chunks.
func (w *Writer) WriteFloat32(name string, v []float32) error {
	t, err := w.expect(name)
	if err != nil {
		return err
	}
	size := t.DType.Size()
	if !t.DType.IsFloat() || int64(len(v))*int64(size) != t.End-t.Begin {
		kind := ErrSizeMismatch
		if !t.DType.IsFloat() {
			kind = ErrDTypeMismatch
		}
		err := newError(w.path, name, fmt.Errorf("%w: %s%v from %d float32 values", kind, t.DType, t.Shape, len(v)))
		w.abort(err)
		return err
	}
	const chunk = 1 << 14
	if w.buf == nil {
		w.buf = make([]byte, chunk*8)
	}
	for len(v) > 0 {
		n := min(len(v), chunk)
		b := w.buf[:n*size]
		putFloat32(t.DType, b, v[:n])
		if _, err := w.bw.Write(b); err != nil {
			w.abort(newError(w.path, name, err))
			return w.err
		}
		v = v[n:]
	}
	w.next++
	return nil
}

// Close finishes the file. It fails if a tensor was not written; a file
// writer then removes its temporary file and leaves path untouched.
// Otherwise it flushes, syncs and renames the temporary file to path.
func (w *Writer) Close() error {
	if w.done || w.err != nil {
		return w.err
	}
	if w.next < len(w.infos) {
		w.abort(newError(w.path, w.infos[w.next].Name, fmt.Errorf("%w: not written before Close (%d of %d written)", ErrWriteOrder, w.next, len(w.infos))))
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.abort(err)
		return w.err
	}
	if w.file != nil {
		err := w.file.Commit()
		w.file = nil
		if err != nil {
			w.err = newError(w.path, "", err)
			return w.err
		}
	}
	w.done = true
	return nil
}

// buildHeader checks infos, computes their offsets and returns the padded
// header including its 8-byte length prefix.
func buildHeader(infos []TensorInfo, metadata map[string]string) ([]byte, []TensorInfo, error) {
	meta := maps.Clone(metadata)
	if meta == nil {
		meta = make(map[string]string)
	}
	if _, ok := meta["format"]; !ok {
		meta["format"] = "pt"
	}
	out := make([]TensorInfo, len(infos))
	seen := make(map[string]bool, len(infos))
	var pos int64
	for k, v := range meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, newError("", metadataKey, fmt.Errorf("%w: metadata %q: %q is not valid UTF-8", ErrInvalidMetadata, k, v))
		}
	}
	for i, t := range infos {
		if !utf8.ValidString(t.Name) {
			return nil, nil, newError("", t.Name, fmt.Errorf("%w: tensor name is not valid UTF-8", ErrInvalidHeader))
		}
		if t.Name == metadataKey {
			return nil, nil, newError("", t.Name, fmt.Errorf("%w: reserved name", ErrInvalidHeader))
		}
		if seen[t.Name] {
			return nil, nil, newError("", t.Name, ErrDuplicateTensor)
		}
		seen[t.Name] = true
		if !t.DType.Valid() {
			return nil, nil, newError("", t.Name, fmt.Errorf("%w: %q", ErrUnknownDType, t.DType))
		}
		n, ok := byteSize(t.DType, t.Shape)
		if !ok || n > int64(maxInt) || t.NumElements() < 0 || pos > maxFileSize-n {
			return nil, nil, newError("", t.Name, fmt.Errorf("%w: %s%v", ErrInvalidShape, t.DType, t.Shape))
		}
		t = t.clone()
		t.Begin, t.End = pos, pos+n
		pos += n
		out[i] = t
	}

	var b bytes.Buffer
	b.Write(make([]byte, 8)) // length, filled in below
	b.WriteString(`{"__metadata__":{`)
	for i, k := range slices.Sorted(maps.Keys(meta)) {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, k)
		b.WriteByte(':')
		writeJSONString(&b, meta[k])
	}
	b.WriteByte('}')
	for _, t := range out {
		b.WriteByte(',')
		writeJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":"`)
		b.WriteString(string(t.DType))
		b.WriteString(`","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(t.Begin, 10))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(t.End, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	hdr := b.Bytes()
	n := uint64(len(hdr) - 8)
	if n > MaxHeaderSize {
		return nil, nil, newError("", "", fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, MaxHeaderSize))
	}
	for i := range 8 {
		hdr[i] = byte(n >> (8 * i))
	}
	return hdr, out, nil
}

// maxFileSize bounds the data section a writer will lay out.
const maxFileSize = 1<<62 - 1

// writeJSONString writes s as a JSON string without HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // drop the newline Encode adds
}

// WriteFile writes tensors to path in the given order (see Create). Each
// tensor's Data must hold exactly its shape's bytes.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	w, err := Create(path, infos, metadata)
	if err != nil {
		return err
	}
	for _, t := range tensors {
		if err := w.Write(t.Name, t.Data); err != nil {
			return err
		}
	}
	return w.Close()
}

// Marshal returns tensors encoded as a safetensors file in memory, in the
// given order. metadata is treated as by Create.
func Marshal(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, infos, metadata)
	if err != nil {
		return nil, err
	}
	for _, t := range tensors {
		if err := w.Write(t.Name, t.Data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteIndex writes dir/model.safetensors.index.json as the Hugging Face
// libraries do: {"metadata": {"total_size": totalSize}, "weight_map":
// {tensor: shard}} with sorted keys and two-space indentation. Every shard
// name must pass CheckShardName. The file is written to a temporary name
// and renamed.
func WriteIndex(dir string, weightMap map[string]string, totalSize int64) error {
	path := filepath.Join(dir, IndexFileName)
	if len(weightMap) == 0 {
		return newError(path, "", fmt.Errorf("%w: empty weight_map", ErrInvalidIndex))
	}
	if totalSize < 0 {
		return newError(path, "", fmt.Errorf("%w: negative total_size %d", ErrInvalidIndex, totalSize))
	}
	for _, t := range slices.Sorted(maps.Keys(weightMap)) {
		if err := CheckShardName(weightMap[t]); err != nil {
			return newError(path, t, err)
		}
	}
	index := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": totalSize}, weightMap}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(index); err != nil {
		return newError(path, "", err)
	}
	if err := atomicfile.WriteFile(path, b.Bytes()); err != nil {
		return newError(path, "", err)
	}
	return nil
}
