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

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/internal/atomicfile"
)

// `jamba chat --session FILE` keeps the conversation in FILE and the
// model's state (the chat engine's slot: keys and values of the attention
// layers, conv windows and SSM states of the Mamba layers) in FILE.state/,
// both saved after every turn, so that a later chat continues where this
// one stopped without computing the history again. The state files are
// the engine's (engine/persist.go: checksummed, versioned, tied to the
// model's identity); the conversation file is:
//
//	"JAMBACHT"  magic, 8 bytes
//	uint32      format version (sessionVersion), little-endian
//	uint32      length of the JSON that follows
//	JSON        sessionMeta: model identity and messages
//	[32]byte    sha256 of everything above
//
// Each is written to a temporary file, synced, and renamed over the old
// one. A conversation whose state is missing or refused is still resumed:
// its history is then computed again on the next turn.
const (
	sessionMagic   = "JAMBACHT"
	sessionVersion = 2
)

type sessionMeta struct {
	Model    string           `json:"model"`    // model.Model.Identity
	Messages []sessionMessage `json:"messages"` // the conversation, system message included
}

type sessionMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// sessionStateDir is the folder of a session's model state ("" for none).
func sessionStateDir(path string) string {
	if path == "" {
		return ""
	}
	return path + ".state"
}

// openSession resumes the session in s.path, or starts one there when the
// file does not exist yet.
func (s *chatSession) openSession(stderr io.Writer) error {
	err := s.loadSession(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(stderr, "new session %s\n", s.path)
		return s.saveSession(s.path)
	case err != nil:
		return err
	}
	turns := 0
	for _, m := range s.msgs {
		if v, _ := m[0].Value.(string); v == "user" {
			turns++
		}
	}
	loaded, refused := s.eng.LoadedStates()
	state := "its state"
	switch {
	case refused > 0:
		state = "its state was refused (damaged or of another model): the next turn computes the history"
	case loaded == 0:
		state = "no saved state: the next turn computes the history"
	}
	fmt.Fprintf(stderr, "resumed session %s: %d turns; %s\n", s.path, turns, state)
	return nil
}

// autosave saves the conversation and the model's state after a turn
// when there is a session. The engine writes its state when it closes and
// reads it back when it starts, so it is restarted (the weights stay
// loaded).
func (s *chatSession) autosave() error {
	if s.path == "" {
		return nil
	}
	if err := s.saveSession(s.path); err != nil {
		return err
	}
	if err := s.eng.Close(); err != nil {
		return fmt.Errorf("saving the state of session %s: %w", s.path, err)
	}
	eng, err := newChatEngine(s.model, sessionStateDir(s.path))
	if err != nil {
		return err
	}
	s.eng = eng
	return nil
}

// saveSession writes the conversation to path atomically.
func (s *chatSession) saveSession(path string) error {
	meta := sessionMeta{Model: s.model.Identity()}
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
	b.WriteString(sessionMagic)
	binary.Write(&b, binary.LittleEndian, uint32(sessionVersion))
	binary.Write(&b, binary.LittleEndian, uint32(len(js)))
	b.Write(js)
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	if err := atomicfile.WriteFile(path, b.Bytes()); err != nil {
		return fmt.Errorf("saving the session: %w", err)
	}
	return nil
}

// loadSession restores the conversation saved in path. A file that is
// truncated, corrupted, of another format version, or made by another
// model is refused with a message saying which.
func (s *chatSession) loadSession(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("session %s: %s", path, fmt.Sprintf(format, a...))
	}
	if len(data) >= 8 && string(data[:8]) != sessionMagic {
		return fail("not a jamba chat session")
	}
	if len(data) < 16+sha256.Size {
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
	if n != len(body)-16 {
		return fail("its header length %d does not match the file", n)
	}
	var meta sessionMeta
	if err := json.Unmarshal(body[16:], &meta); err != nil {
		return fail("header: %v", err)
	}
	if id := s.model.Identity(); meta.Model != id {
		return fail("made by another model (identity %.12s…, this model is %.12s…): load the model it was made with, or start a new session", meta.Model, id)
	}
	s.msgs = s.msgs[:0]
	for _, m := range meta.Messages {
		s.msgs = append(s.msgs, chat.NewMessage(m.Role, m.Content))
	}
	return nil
}
