// Package statestore holds the places where an engine keeps the states of
// finished requests beyond its memory (engine.StateStore): a folder on
// disk (Dir), which a restarted server reads back, and a Redis server
// (Redis), which several servers share.
//
// A store holds opaque values by key within a size budget, dropping the
// least recently used ones to make room, and states unused for longer
// than a TTL. The values carry their own checksum and the model's
// identity (engine/persist.go): a store need not trust its medium.
package statestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/internal/atomicfile"
)

// Options bound a store.
type Options struct {
	// Budget is the most bytes of values kept (0: no bound). A value
	// larger than the budget is not stored.
	Budget int64
	// TTL drops a state not used (written or read) for this long (0:
	// never).
	TTL time.Duration
	// MaxEntries is the most states kept (0: no bound).
	MaxEntries int
}

// Dir keeps each state in a file of a folder, named
// state-TOKENS-KEY.jstate, written atomically (temporary file, fsync,
// rename). A file's modification time is when it was last used. Several
// processes may share a folder.
type Dir struct {
	dir  string
	opts Options
	mu   sync.Mutex // orders this process's Puts (the budget's accounting)

	tokensMu sync.Mutex
	tokens   map[string]int // key → tokens, as the last Index saw them

	usedMu   sync.Mutex
	lastUsed time.Time // the latest time of use this process gave a file
}

const (
	filePrefix = "state-"
	fileExt    = ".jstate"
)

// OpenDir opens (creating it if needed) the folder dir as a store.
func OpenDir(dir string, opts Options) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("state folder %s is not a folder", dir)
	}
	// Temporary files of writes that a killed process left behind.
	if tmps, err := filepath.Glob(filepath.Join(dir, "."+filePrefix+"*"+fileExt+".tmp*")); err == nil {
		for _, t := range tmps {
			if fi, err := os.Lstat(t); err == nil && time.Since(fi.ModTime()) > time.Minute {
				os.Remove(t)
			}
		}
	}
	return &Dir{dir: dir, opts: opts}, nil
}

// Path is the store's folder.
func (d *Dir) Path() string { return d.dir }

type dirEntry struct {
	engine.StoredState
	path string
	used time.Time
}

func (d *Dir) name(st engine.StoredState) string {
	return filepath.Join(d.dir, filePrefix+strconv.Itoa(st.Tokens)+"-"+st.Key+fileExt)
}

// parseName reads a file name written by name.
func parseName(name string) (tokens int, key string, ok bool) {
	rest, ok := strings.CutPrefix(name, filePrefix)
	if !ok {
		return 0, "", false
	}
	rest, ok = strings.CutSuffix(rest, fileExt)
	if !ok {
		return 0, "", false
	}
	n, key, ok := strings.Cut(rest, "-")
	if !ok || !validKey(key) {
		return 0, "", false
	}
	tokens, err := strconv.Atoi(n)
	if err != nil || tokens <= 0 {
		return 0, "", false
	}
	return tokens, key, true
}

// validKey reports whether key looks like an engine.StateKey.
func validKey(key string) bool {
	if len(key) != 64 {
		return false
	}
	for _, c := range key {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// entries lists the folder's state files, those past the TTL left out
// (and removed).
func (d *Dir) entries() ([]dirEntry, error) {
	des, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var out []dirEntry
	now := time.Now()
	for _, de := range des {
		tokens, key, ok := parseName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		path := filepath.Join(d.dir, de.Name())
		if d.opts.TTL > 0 && now.Sub(fi.ModTime()) > d.opts.TTL {
			os.Remove(path)
			continue
		}
		out = append(out, dirEntry{StoredState: engine.StoredState{Key: key, Tokens: tokens, Size: fi.Size()}, path: path, used: fi.ModTime()})
	}
	return out, nil
}

// Index lists the states in the folder.
func (d *Dir) Index(ctx context.Context) ([]engine.StoredState, error) {
	es, err := d.entries()
	if err != nil {
		return nil, err
	}
	out := make([]engine.StoredState, len(es))
	tokens := make(map[string]int, len(es))
	for i, e := range es {
		out[i] = e.StoredState
		tokens[e.Key] = e.Tokens
	}
	d.tokensMu.Lock()
	d.tokens = tokens
	d.tokensMu.Unlock()
	return out, nil
}

// find locates key's file: by its name when the last Index listed it,
// else by listing the folder.
func (d *Dir) find(key string) (dirEntry, error) {
	d.tokensMu.Lock()
	n, ok := d.tokens[key]
	d.tokensMu.Unlock()
	if ok {
		st := engine.StoredState{Key: key, Tokens: n}
		if _, err := os.Lstat(d.name(st)); err == nil {
			return dirEntry{StoredState: st, path: d.name(st)}, nil
		}
	}
	es, err := d.entries()
	if err != nil {
		return dirEntry{}, err
	}
	for _, e := range es {
		if e.Key == key {
			return e, nil
		}
	}
	return dirEntry{}, fmt.Errorf("%s: %w", key, engine.ErrStateNotFound)
}

// Get reads key's state and marks it used.
func (d *Dir) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := d.find(key)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", e.path, engine.ErrStateNotFound)
	}
	if err != nil {
		return nil, err
	}
	d.touch(e.path)
	return data, nil
}

// touch marks path as used now. The file systems stamp a write with a
// coarse clock (a tick of a few milliseconds), so a file written just
// after another was read could look the older one; touch stamps both
// uses with the fine clock instead, each later than the last it gave, so
// that this process's uses keep their order however fast they come.
func (d *Dir) touch(path string) {
	d.usedMu.Lock()
	t := time.Now()
	if !t.After(d.lastUsed) {
		t = d.lastUsed.Add(time.Microsecond)
	}
	d.lastUsed = t
	d.usedMu.Unlock()
	os.Chtimes(path, t, t)
}

// Put writes the state atomically, then removes the least recently used
// states beyond the budget and the entry limit.
func (d *Dir) Put(ctx context.Context, st engine.StoredState, data []byte) error {
	if !validKey(st.Key) || st.Tokens <= 0 {
		return fmt.Errorf("state folder: bad key %q of %d tokens", st.Key, st.Tokens)
	}
	if d.opts.Budget > 0 && int64(len(data)) > d.opts.Budget {
		return fmt.Errorf("a state of %d bytes is larger than the budget of %d bytes", len(data), d.opts.Budget)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	path := d.name(st)
	if err := atomicfile.WriteFile(path, data); err != nil {
		return err
	}
	d.touch(path)
	return d.evict(path)
}

// evict removes the least recently used files (keep excepted) until the
// rest is within the budget and the entry limit.
func (d *Dir) evict(keep string) error {
	es, err := d.entries()
	if err != nil {
		return err
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].used.Before(es[j].used) })
	var total int64
	for _, e := range es {
		total += e.Size
	}
	n := len(es)
	for _, e := range es {
		over := d.opts.Budget > 0 && total > d.opts.Budget || d.opts.MaxEntries > 0 && n > d.opts.MaxEntries
		if !over {
			break
		}
		if e.path == keep {
			continue
		}
		if err := os.Remove(e.path); err == nil || errors.Is(err, fs.ErrNotExist) {
			total -= e.Size
			n--
		}
	}
	return nil
}

// Delete removes key's state.
func (d *Dir) Delete(ctx context.Context, key string) error {
	e, err := d.find(key)
	if errors.Is(err, engine.ErrStateNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(e.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Clear removes every state of the folder.
func (d *Dir) Clear() error {
	es, err := d.entries()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range es {
		if err := os.Remove(e.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
