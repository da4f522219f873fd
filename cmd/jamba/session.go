package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/chat"
)

// A chat session file keeps a conversation and the hybrid state that has
// consumed it (keys and values of the attention layers, conv windows and
// SSM states of the Mamba layers), so that `jamba chat --session FILE`
// continues where it stopped without computing the history again:
//
//	"JAMBACHT"  magic, 8 bytes
//	uint32      format version (sessionVersion), little-endian
//	uint32      length of the JSON that follows
//	JSON        sessionMeta: model identity, messages, the ids the state consumed
//	bytes       the state (cache.Seq.Encode)
//	[32]byte    sha256 of everything above
//
// It is written to a temporary file, synced, and renamed over the old one
// after every turn, so a crash leaves the previous turn's file.
const (
	sessionMagic   = "JAMBACHT"
	sessionVersion = 1
)

type sessionMeta struct {
	Model    string           `json:"model"`    // model.Model.Identity
	Messages []sessionMessage `json:"messages"` // the conversation, system message included
	Fed      []int            `json:"fed"`      // the ids the state has consumed
}

type sessionMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// openSession resumes the session in path, or starts one there when the
// file does not exist yet.
func (s *chatSession) openSession(path string, stderr io.Writer) error {
	err := s.loadSession(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(stderr, "new session %s\n", path)
		return s.saveSession(path)
	case err != nil:
		return err
	}
	turns := 0
	for _, m := range s.msgs {
		if v, _ := m[0].Value.(string); v == "user" {
			turns++
		}
	}
	fmt.Fprintf(stderr, "resumed session %s: %d turns, %d tokens of state\n", path, turns, len(s.fed))
	return nil
}

// autosave saves the session after a turn when there is one.
func (s *chatSession) autosave(path string) error {
	if path == "" {
		return nil
	}
	return s.saveSession(path)
}

// saveSession writes s to path atomically.
func (s *chatSession) saveSession(path string) error {
	meta := sessionMeta{Model: s.m.Identity(), Fed: s.fed}
	for _, msg := range s.msgs {
		var m sessionMessage
		for _, kv := range msg {
			v, _ := kv.Value.(string)
			switch kv.Key {
			case "role":
				m.Role = v
			case "content":
				m.Content = v
			}
		}
		meta.Messages = append(meta.Messages, m)
	}
	js, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.Grow(16 + len(js) + int(s.st.EncodedSize()) + sha256.Size)
	b.WriteString(sessionMagic)
	binary.Write(&b, binary.LittleEndian, uint32(sessionVersion))
	binary.Write(&b, binary.LittleEndian, uint32(len(js)))
	b.Write(js)
	if err := s.st.Encode(&b); err != nil {
		return err
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return writeFileAtomic(path, b.Bytes())
}

// loadSession restores the conversation and state saved in path. A file
// that is truncated, corrupted, of another format version, or made by
// another model is refused with a message saying which.
func (s *chatSession) loadSession(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("session %s: %s", path, fmt.Sprintf(format, a...))
	}
	if len(data) < 16+sha256.Size || string(data[:8]) != sessionMagic {
		if len(data) >= 8 && string(data[:8]) != sessionMagic {
			return fail("not a jamba chat session")
		}
		return fail("truncated (%d bytes)", len(data))
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return fail("corrupted or truncated: its checksum does not match (start a new session, or restore a copy)")
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != sessionVersion {
		return fail("format version %d; this jamba reads version %d", v, sessionVersion)
	}
	n := int(binary.LittleEndian.Uint32(data[12:]))
	if n > len(body)-16 {
		return fail("its header length %d exceeds the file", n)
	}
	var meta sessionMeta
	if err := json.Unmarshal(body[16:16+n], &meta); err != nil {
		return fail("header: %v", err)
	}
	if id := s.m.Identity(); meta.Model != id {
		return fail("made by another model (identity %.12s…, this model is %.12s…): load the model it was made with, or start a new session", meta.Model, id)
	}
	st, err := cache.Decode(bytes.NewReader(body[16+n:]), s.m.CacheShape(), 0, s.m.Config.MaxPositionEmbeddings)
	if err != nil {
		if errors.Is(err, cache.ErrShape) {
			return fail("its state has another shape (was it saved with another --kv-cache?): %v", err)
		}
		return fail("%v", err)
	}
	if st.Len != len(meta.Fed) {
		return fail("its state holds %d tokens but records %d ids", st.Len, len(meta.Fed))
	}
	if err := s.st.CopyFrom(st); err != nil {
		return fail("%v (was it saved with another --kv-cache?)", err)
	}
	s.fed = append(s.fed[:0], meta.Fed...)
	s.msgs = s.msgs[:0]
	for _, m := range meta.Messages {
		s.msgs = append(s.msgs, chat.NewMessage(m.Role, m.Content))
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it,
// renames it over path and syncs the folder.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
