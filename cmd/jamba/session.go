package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/statestore"
)

// `jamba chat --session FILE` keeps the conversation in FILE and the
// model's state (the chat engine's slot: keys and values of the attention
// layers, conv windows and SSM states of the Mamba layers) in FILE.state/,
// both saved after every turn, so that a later chat continues where this
// one stopped without computing the history again. The state files are
// the engine's stored states (engine/persist.go: checksummed, versioned,
// tied to the model's identity; statestore.Dir), the last turn's only;
// the conversation file is:
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

// chatStateEntries is how many states a session's folder keeps: the last
// turn's whole state and the state at the end of its prompt.
const chatStateEntries = 2

// chatStore is the chat engine's state store: the session's folder
// (FILE.state/ of --session), read and written, and the folder of a
// session opened with /load, read only. Either may be absent.
type chatStore struct {
	mu      sync.Mutex
	session *statestore.Dir
	loaded  *statestore.Dir
}

func (c *chatStore) dirs() []*statestore.Dir {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ds []*statestore.Dir
	for _, d := range []*statestore.Dir{c.session, c.loaded} {
		if d != nil {
			ds = append(ds, d)
		}
	}
	return ds
}

func (c *chatStore) Index(ctx context.Context) ([]engine.StoredState, error) {
	var all []engine.StoredState
	for _, d := range c.dirs() {
		idx, err := d.Index(ctx)
		if err != nil {
			return nil, err
		}
		all = append(all, idx...)
	}
	return all, nil
}

func (c *chatStore) Get(ctx context.Context, key string) ([]byte, error) {
	for _, d := range c.dirs() {
		data, err := d.Get(ctx, key)
		if !errors.Is(err, engine.ErrStateNotFound) {
			return data, err
		}
	}
	return nil, engine.ErrStateNotFound
}

func (c *chatStore) Put(ctx context.Context, st engine.StoredState, data []byte) error {
	c.mu.Lock()
	d := c.session
	c.mu.Unlock()
	if d == nil {
		return nil // the engine's slot keeps it
	}
	return d.Put(ctx, st, data)
}

func (c *chatStore) Delete(ctx context.Context, key string) error {
	var errs []error
	for _, d := range c.dirs() {
		errs = append(errs, d.Delete(ctx, key))
	}
	return errors.Join(errs...)
}

// openStateDir opens the state folder of the session in path.
func openStateDir(path string) (*statestore.Dir, error) {
	d, err := statestore.OpenDir(sessionStateDir(path), statestore.Options{MaxEntries: chatStateEntries})
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", path, err)
	}
	return d, nil
}

// start makes the session's store (with the state folder of path, when
// given) and its engine.
func (s *chatSession) start(path string) error {
	s.store = &chatStore{}
	if path != "" {
		d, err := openStateDir(path)
		if err != nil {
			return err
		}
		s.store.session, s.path = d, path
	}
	eng, err := newChatEngine(s.model, s.backend, s.store, s.errw)
	if err != nil {
		return err
	}
	s.eng = eng
	return nil
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
	state := "its state"
	if s.backend != nil {
		state = "the next turn computes the history (states are saved on the CPU only)"
	} else if idx, _ := s.store.Index(context.Background()); len(idx) == 0 {
		state = "no saved state: the next turn computes the history"
	}
	fmt.Fprintf(stderr, "resumed session %s: %d turns; %s\n", s.path, s.turns(), state)
	return nil
}

// autosave saves the conversation after a turn when there is a session.
// The engine has written the turn's state to the session's folder before
// the answer ended.
func (s *chatSession) autosave() error {
	if s.path == "" {
		return nil
	}
	return s.saveSession(s.path)
}

// clear forgets the conversation and every state of it: the engine's,
// the session's folder and what /load brought.
func (s *chatSession) clear() error {
	s.reset()
	if err := s.eng.Forget(context.Background()); err != nil {
		return err
	}
	s.store.mu.Lock()
	d := s.store.session
	s.store.loaded = nil
	s.store.mu.Unlock()
	if d != nil {
		if err := d.Clear(); err != nil {
			return fmt.Errorf("clearing the state of session %s: %w", s.path, err)
		}
	}
	return s.autosave()
}

// saveAs writes the conversation to path and the engine's state to
// path.state/ (what --session FILE would have written).
func (s *chatSession) saveAs(path string) error {
	if s.backend != nil {
		// The state is in the device's memory: the conversation alone is
		// saved, and computed again when it is loaded.
		return s.saveSession(path)
	}
	d, err := openStateDir(path)
	if err != nil {
		return err
	}
	if err := d.Clear(); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if err := s.eng.Export(context.Background(), d); err != nil {
		return fmt.Errorf("saving the state to %s: %w", d.Path(), err)
	}
	return s.saveSession(path)
}

// load continues the conversation saved in path: its messages replace the
// current ones and its state folder is read from (the next turn continues
// its state, not computing the history).
func (s *chatSession) load(path string) error {
	msgs := s.msgs
	if err := s.loadSession(path); err != nil {
		s.msgs = msgs
		return err
	}
	s.system = ""
	if len(s.msgs) > 0 && role(s.msgs[0]) == "system" {
		v, _ := s.msgs[0].Get("content")
		s.system, _ = v.(string)
	}
	var d *statestore.Dir
	if fi, err := os.Stat(sessionStateDir(path)); err == nil && fi.IsDir() {
		d, _ = statestore.OpenDir(sessionStateDir(path), statestore.Options{})
	}
	s.store.mu.Lock()
	s.store.loaded = d
	s.store.mu.Unlock()
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
	s.msgs = nil
	for _, m := range meta.Messages {
		s.msgs = append(s.msgs, chat.NewMessage(m.Role, m.Content))
	}
	return nil
}
