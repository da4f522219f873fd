package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest header length accepted, in bytes, as in the
// reference implementation.
const MaxHeaderSize = 100_000_000

// maxDepth bounds the nesting of JSON values skipped inside a header or an
// index (unknown fields), so that hostile input cannot recurse deeply.
const maxDepth = 64

// metadataKey is the reserved header key holding the file's metadata.
const metadataKey = "__metadata__"

// header is the parsed and validated header of a file.
type header struct {
	tensors  map[string]TensorInfo
	names    []string // sorted
	metadata map[string]string
}

// parseFile validates data as a whole safetensors file and returns its
// header and the data section. Every error is an *Error naming file.
func parseFile(file string, data []byte) (*header, []byte, error) {
	if len(data) < 8 {
		return nil, nil, newError(file, "", fmt.Errorf("%w: %d bytes, need at least 8", ErrHeaderTooSmall, len(data)))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > MaxHeaderSize {
		return nil, nil, newError(file, "", fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, MaxHeaderSize))
	}
	// n <= MaxHeaderSize, so 8+n cannot overflow.
	if n > uint64(len(data)-8) {
		return nil, nil, newError(file, "", fmt.Errorf("%w: header of %d bytes, file of %d bytes", ErrInvalidHeaderLength, n, len(data)))
	}
	hdr := data[8 : 8+n]
	body := data[8+n:]
	h, err := parseHeader(hdr, int64(len(body)))
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = file
			return nil, nil, e
		}
		return nil, nil, newError(file, "", err)
	}
	return h, body, nil
}

// parseHeader parses the JSON header and checks every tensor entry against
// a data section of dataLen bytes.
func parseHeader(hdr []byte, dataLen int64) (*header, error) {
	if !utf8.Valid(hdr) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrInvalidHeader)
	}
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, fmt.Errorf("%w: does not start with '{'", ErrInvalidHeader)
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return nil, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	h := &header{tensors: make(map[string]TensorInfo)}
	seenMeta := false
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		if key == metadataKey {
			if seenMeta {
				return nil, newError("", key, fmt.Errorf("%w: %q", ErrDuplicateKey, key))
			}
			seenMeta = true
			m, err := readStringMap(dec)
			if err != nil {
				return nil, newError("", key, err)
			}
			h.metadata = m
			continue
		}
		if _, dup := h.tensors[key]; dup {
			return nil, newError("", key, fmt.Errorf("%w: %q", ErrDuplicateKey, key))
		}
		info, err := readTensorInfo(dec)
		if err != nil {
			return nil, newError("", key, err)
		}
		info.Name = key
		h.tensors[key] = info
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	// Only whitespace padding may follow the object.
	rest := hdr[dec.InputOffset():]
	if i := bytes.IndexFunc(rest, func(r rune) bool { return !isJSONSpace(r) }); i >= 0 {
		return nil, fmt.Errorf("%w: unexpected data after the JSON object at byte %d", ErrInvalidHeader, dec.InputOffset()+int64(i))
	}
	if err := validateLayout(h.tensors, dataLen); err != nil {
		return nil, err
	}
	h.names = make([]string, 0, len(h.tensors))
	for name := range h.tensors {
		h.names = append(h.names, name)
	}
	slices.Sort(h.names)
	return h, nil
}

func isJSONSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// readKey reads an object key, or fails.
func readKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%w: expected an object key, got %v", ErrInvalidHeader, tok)
	}
	return key, nil
}

// expectDelim reads one token and checks that it is the delimiter d.
func expectDelim(dec *json.Decoder, d json.Delim, what string, kind error) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return fmt.Errorf("%w: %s: expected '%c', got %s", kind, what, d, describeToken(tok))
	}
	return nil
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return "'" + string(v) + "'"
	case string:
		return "string " + strconv.Quote(v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return "bool " + strconv.FormatBool(v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// readStringMap reads a JSON object of string values (or null, meaning no
// metadata, which the reference implementation also accepts).
func readStringMap(dec *json.Decoder) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: expected an object, got %s", ErrInvalidMetadata, describeToken(tok))
	}
	m := make(map[string]string)
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateKey, key)
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
		}
		v, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: value of %q is %s, want a string", ErrInvalidMetadata, key, describeToken(tok))
		}
		m[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	return m, nil
}

// readTensorInfo reads one tensor entry {"dtype":..,"shape":..,"data_offsets":..}.
// Unknown keys are skipped (after checking them for duplicates).
func readTensorInfo(dec *json.Decoder) (TensorInfo, error) {
	var info TensorInfo
	if err := expectDelim(dec, '{', "tensor entry", ErrInvalidHeader); err != nil {
		return info, err
	}
	seen := make(map[string]bool, 3)
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return info, err
		}
		if seen[key] {
			return info, fmt.Errorf("%w: %q", ErrDuplicateKey, key)
		}
		seen[key] = true
		switch key {
		case "dtype":
			tok, err := dec.Token()
			if err != nil {
				return info, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
			}
			s, ok := tok.(string)
			if !ok {
				return info, fmt.Errorf("%w: dtype is %s, want a string", ErrInvalidHeader, describeToken(tok))
			}
			if !DType(s).Valid() {
				return info, fmt.Errorf("%w: %q", ErrUnknownDType, s)
			}
			info.DType = DType(s)
		case "shape":
			dims, err := readIntList(dec, "shape", ErrInvalidShape)
			if err != nil {
				return info, err
			}
			info.Shape = make([]int, len(dims))
			for i, d := range dims {
				if d > math.MaxInt {
					return info, fmt.Errorf("%w: dimension %d too large", ErrInvalidShape, d)
				}
				info.Shape[i] = int(d)
			}
		case "data_offsets":
			offs, err := readIntList(dec, "data_offsets", ErrInvalidOffsets)
			if err != nil {
				return info, err
			}
			if len(offs) != 2 {
				return info, fmt.Errorf("%w: %d values, want 2", ErrInvalidOffsets, len(offs))
			}
			if offs[0] > math.MaxInt64 || offs[1] > math.MaxInt64 {
				return info, fmt.Errorf("%w: [%d, %d] too large", ErrInvalidOffsets, offs[0], offs[1])
			}
			info.Begin, info.End = int64(offs[0]), int64(offs[1])
			if info.Begin > info.End {
				return info, fmt.Errorf("%w: begin %d > end %d", ErrInvalidOffsets, info.Begin, info.End)
			}
		default:
			if err := skipValue(dec, 0); err != nil {
				return info, err
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return info, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	switch {
	case !seen["dtype"]:
		return info, fmt.Errorf("%w: missing dtype", ErrInvalidHeader)
	case !seen["shape"]:
		return info, fmt.Errorf("%w: missing shape", ErrInvalidShape)
	case !seen["data_offsets"]:
		return info, fmt.Errorf("%w: missing data_offsets", ErrInvalidOffsets)
	}
	return info, nil
}

// readIntList reads a JSON array of non-negative integers. Floats,
// exponents, signs and values beyond uint64 are rejected with kind.
func readIntList(dec *json.Decoder, what string, kind error) ([]uint64, error) {
	if err := expectDelim(dec, '[', what, kind); err != nil {
		return nil, err
	}
	var out []uint64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%w: %s element is %s, want a non-negative integer", kind, what, describeToken(tok))
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s element %s is not a non-negative integer", kind, what, num)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	return out, nil
}

// skipValue reads and discards one JSON value, rejecting duplicate keys in
// any object inside it and nesting deeper than maxDepth.
func skipValue(dec *json.Decoder, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nesting deeper than %d", ErrInvalidHeader, maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := make(map[string]bool)
		for dec.More() {
			key, err := readKey(dec)
			if err != nil {
				return err
			}
			if seen[key] {
				return fmt.Errorf("%w: %q", ErrDuplicateKey, key)
			}
			seen[key] = true
			if err := skipValue(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := skipValue(dec, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: unexpected %q", ErrInvalidHeader, d)
	}
	if _, err := dec.Token(); err != nil { // closing delimiter
		return fmt.Errorf("%w: %v", ErrInvalidHeader, err)
	}
	return nil
}

// byteSize returns product(shape) * dtype size, or false on overflow or a
// negative dimension.
func byteSize(dtype DType, shape []int) (int64, bool) {
	size := int64(dtype.Size())
	if size == 0 {
		return 0, false
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if n != 0 && int64(d) > math.MaxInt64/n {
			return 0, false
		}
		n *= int64(d)
	}
	if n > math.MaxInt64/size {
		return 0, false
	}
	return n * size, true
}

// validateLayout checks every tensor's size against its offsets, and that
// the tensors tile [0, dataLen) exactly: sorted by offsets, each begins
// where the previous one ended, the first at 0 and the last at dataLen.
func validateLayout(tensors map[string]TensorInfo, dataLen int64) error {
	infos := make([]TensorInfo, 0, len(tensors))
	for _, t := range tensors {
		nb, ok := byteSize(t.DType, t.Shape)
		if !ok {
			return newError("", t.Name, fmt.Errorf("%w: %s%v overflows", ErrInvalidShape, t.DType, t.Shape))
		}
		if nb != t.End-t.Begin {
			return newError("", t.Name, fmt.Errorf("%w: %s%v needs %d bytes, data_offsets [%d, %d] hold %d",
				ErrSizeMismatch, t.DType, t.Shape, nb, t.Begin, t.End, t.End-t.Begin))
		}
		if t.End > dataLen {
			return newError("", t.Name, fmt.Errorf("%w: end %d beyond data section of %d bytes", ErrInvalidOffsets, t.End, dataLen))
		}
		infos = append(infos, t)
	}
	slices.SortFunc(infos, func(a, b TensorInfo) int {
		if a.Begin != b.Begin {
			return cmp.Compare(a.Begin, b.Begin)
		}
		if a.End != b.End {
			return cmp.Compare(a.End, b.End)
		}
		return strings.Compare(a.Name, b.Name)
	})
	var pos int64
	for _, t := range infos {
		if t.Begin != pos {
			what := "gap"
			if t.Begin < pos {
				what = "overlap"
			}
			if pos == 0 {
				what = "data does not start at offset 0"
			}
			return newError("", t.Name, fmt.Errorf("%w: %s: begins at %d, previous tensor ends at %d", ErrInvalidOffsets, what, t.Begin, pos))
		}
		pos = t.End
	}
	if pos != dataLen {
		return fmt.Errorf("%w: tensors end at %d, data section has %d bytes", ErrInvalidOffsets, pos, dataLen)
	}
	return nil
}
