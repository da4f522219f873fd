package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/sample"
)

// With Config.StateDir, the states that finished requests leave in their
// slots (what prefix reuse continues) are written there when the engine
// closes and read back when the next one starts, so a restarted server
// continues earlier conversations without computing them again. Each slot
// is one file, slot-IDENTITY-N.jstate (the model's identity abbreviated,
// so that models sharing a folder keep their own):
//
//	"JAMBASLT"  magic, 8 bytes
//	uint32      format version (stateVersion), little-endian
//	uint32      length of the model identity that follows
//	bytes       model.Model.Identity
//	uint32      number of token ids, then the ids as uint32
//	bytes       the state (cache.Seq.Encode)
//	[32]byte    sha256 of everything above
//
// A file that is truncated, corrupted, of another version or made by
// another model is skipped (and reported by LoadedStates' error count):
// the request it would have served computes its prompt instead, never
// continues a wrong state. Copies of the Mamba state inside a slot
// (SnapshotBytes) are not kept: a restarted engine continues whole states.
const (
	stateMagic   = "JAMBASLT"
	stateVersion = 1
	stateExt     = ".jstate"
)

// saveStates writes the free slots' states, most recently used first,
// within StateBytes, and removes the files it read at start that it did
// not write again (files of another model stay).
func (e *Engine) saveStates() error {
	dir := e.cfg.StateDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keep := map[string]bool{}
	id := e.m.Identity()
	var used int64
	for i := len(e.free) - 1; i >= 0; i-- {
		sl := e.free[i]
		if len(sl.ids) == 0 || sl.cache.Len != len(sl.ids) || sl.adapter != nil { // the base model's states only
			continue
		}
		size := sl.cache.EncodedSize() + int64(4*len(sl.ids))
		if e.cfg.StateBytes > 0 && used+size > e.cfg.StateBytes {
			continue
		}
		used += size
		var b bytes.Buffer
		b.WriteString(stateMagic)
		binary.Write(&b, binary.LittleEndian, uint32(stateVersion))
		binary.Write(&b, binary.LittleEndian, uint32(len(id)))
		b.WriteString(id)
		binary.Write(&b, binary.LittleEndian, uint32(len(sl.ids)))
		for _, t := range sl.ids {
			binary.Write(&b, binary.LittleEndian, uint32(t))
		}
		if err := sl.cache.Encode(&b); err != nil {
			return err
		}
		sum := sha256.Sum256(b.Bytes())
		b.Write(sum[:])
		// Older slots get lower numbers: loading keeps their order.
		name := filepath.Join(dir, fmt.Sprintf("slot-%s-%03d%s", id[:12], i, stateExt))
		if err := atomicfile.WriteFile(name, b.Bytes()); err != nil {
			return fmt.Errorf("engine state: %w", err)
		}
		keep[name] = true
	}
	for _, f := range e.stateFiles {
		if !keep[f] {
			os.Remove(f)
		}
	}
	return nil
}

// loadStates fills the free slots from StateDir, at most MaxBatch, and
// returns how many it loaded and how many files it refused.
func (e *Engine) loadStates() (loaded, refused int) {
	id := e.m.Identity()
	files, _ := filepath.Glob(filepath.Join(e.cfg.StateDir, "slot-"+id[:12]+"-*"+stateExt))
	sort.Strings(files)
	if len(files) > e.cfg.MaxBatch {
		files = files[len(files)-e.cfg.MaxBatch:] // the most recent
	}
	for _, f := range files {
		sl, err := e.readState(f, id)
		if err != nil {
			refused++
			continue
		}
		e.free = append(e.free, sl)
		e.stateFiles = append(e.stateFiles, f)
		loaded++
	}
	return loaded, refused
}

// readState reads one slot file, checking everything before using it.
func (e *Engine) readState(path, identity string) (*slot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < 16+sha256.Size || string(data[:8]) != stateMagic {
		return nil, fmt.Errorf("%s: not a state file", path)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%s: checksum mismatch", path)
	}
	if v := binary.LittleEndian.Uint32(body[8:]); v != stateVersion {
		return nil, fmt.Errorf("%s: format version %d", path, v)
	}
	r := bytes.NewReader(body[12:])
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || int64(n) > int64(r.Len()) {
		return nil, fmt.Errorf("%s: bad identity length", path)
	}
	got := make([]byte, n)
	r.Read(got)
	if string(got) != identity {
		return nil, fmt.Errorf("%s: made by another model", path)
	}
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || int(n) > e.cfg.Context || int64(n)*4 > int64(r.Len()) {
		return nil, fmt.Errorf("%s: bad token count", path)
	}
	ids := make([]int, n)
	for i := range ids {
		var t uint32
		binary.Read(r, binary.LittleEndian, &t)
		if int(t) >= e.m.Config.VocabSize {
			return nil, fmt.Errorf("%s: token id %d outside the vocabulary", path, t)
		}
		ids[i] = int(t)
	}
	st, err := cache.Decode(r, e.m.CacheShape(), len(ids), e.cfg.Context)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Len != len(ids) || r.Len() != 0 {
		return nil, fmt.Errorf("%s: state of %d tokens for %d ids", path, st.Len, len(ids))
	}
	V := e.m.Config.VocabSize
	return &slot{
		cache:   st,
		ids:     ids,
		smp:     sample.New(sample.Params{}, V),
		scratch: make([]float32, V),
		topIDs:  make([]int, MaxTopLogprobs),
		topLP:   make([]float32, MaxTopLogprobs),
	}, nil
}
