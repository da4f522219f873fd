package statestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/internal/testutil"
)

type store interface {
	engine.StateStore
}

func key(i int) string { return fmt.Sprintf("%064x", i+1) }

func value(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }

func indexKeys(t *testing.T, s store) []string {
	t.Helper()
	idx, err := s.Index(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, st := range idx {
		keys = append(keys, st.Key)
	}
	slices.Sort(keys)
	return keys
}

// checkStore runs the behaviour every store shares: values come back as
// written, listed with their token counts; a missing key is
// ErrStateNotFound; the least recently used states (a read counts as a
// use) make room within the budget; a value above the budget is refused;
// Delete removes.
func checkStore(t *testing.T, s store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, key(99)); !errors.Is(err, engine.ErrStateNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	for i := range 3 {
		if err := s.Put(ctx, engine.StoredState{Key: key(i), Tokens: 10 + i}, value(i, 300)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // distinct times of use
	}
	idx, err := s.Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) != 3 {
		t.Fatalf("index %+v", idx)
	}
	for _, st := range idx {
		var i int
		fmt.Sscanf(st.Key, "%x", &i)
		if st.Tokens != 10+i-1 || st.Size != 300 {
			t.Errorf("index entry %+v", st)
		}
	}
	// Key 0 is read, so key 1 is the least recently used.
	if v, err := s.Get(ctx, key(0)); err != nil || !bytes.Equal(v, value(0, 300)) {
		t.Fatalf("Get: %d bytes, %v", len(v), err)
	}
	time.Sleep(5 * time.Millisecond)
	// The budget is 1000 bytes: a fourth state of 300 drops one.
	if err := s.Put(ctx, engine.StoredState{Key: key(3), Tokens: 13}, value(3, 300)); err != nil {
		t.Fatal(err)
	}
	if got, want := indexKeys(t, s), []string{key(0), key(2), key(3)}; !slices.Equal(got, want) {
		t.Errorf("after the budget: %v, want %v", got, want)
	}
	if _, err := s.Get(ctx, key(1)); !errors.Is(err, engine.ErrStateNotFound) {
		t.Errorf("Get of the evicted state: %v", err)
	}
	if err := s.Put(ctx, engine.StoredState{Key: key(4), Tokens: 1}, value(4, 1001)); err == nil {
		t.Error("a state larger than the budget was stored")
	}
	if err := s.Put(ctx, engine.StoredState{Key: "../x", Tokens: 1}, value(4, 1)); err == nil {
		t.Error("a malformed key was stored")
	}
	if err := s.Delete(ctx, key(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key(2)); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
	if got, want := indexKeys(t, s), []string{key(0), key(3)}; !slices.Equal(got, want) {
		t.Errorf("after Delete: %v, want %v", got, want)
	}
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenDir(dir, Options{Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, s)
	// Files that are not states are left alone and not listed.
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "state-5-zz.jstate"), []byte("x"), 0o644)
	if got := indexKeys(t, s); len(got) != 2 {
		t.Errorf("index with foreign files: %v", got)
	}

	// The entry limit, and the TTL.
	s2, _ := OpenDir(t.TempDir(), Options{MaxEntries: 2, TTL: time.Hour})
	ctx := context.Background()
	for i := range 3 {
		s2.Put(ctx, engine.StoredState{Key: key(i), Tokens: 1}, value(i, 10))
		time.Sleep(5 * time.Millisecond)
	}
	if got, want := indexKeys(t, s2), []string{key(1), key(2)}; !slices.Equal(got, want) {
		t.Errorf("with at most 2 entries: %v, want %v", got, want)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(s2.name(engine.StoredState{Key: key(1), Tokens: 1}), old, old)
	if got, want := indexKeys(t, s2), []string{key(2)}; !slices.Equal(got, want) {
		t.Errorf("past the TTL: %v, want %v", got, want)
	}
}

// TestDirFastUses: uses that follow each other faster than the file
// system's clock ticks keep their order. A write is stamped by the file
// system's coarse clock and a read by Chtimes: without a fine stamp on
// writes, a state written just after another was read looks the older
// one and is evicted in its place (a resumed chat then computed its
// history again).
func TestDirFastUses(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		s, _ := OpenDir(t.TempDir(), Options{MaxEntries: 2})
		put := func(i int) {
			if err := s.Put(ctx, engine.StoredState{Key: key(i), Tokens: 1 + i}, value(i, 10)); err != nil {
				t.Fatal(err)
			}
		}
		put(0)
		put(1)
		// The read falls at a different point of the clock tick each round.
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if _, err := s.Get(ctx, key(0)); err != nil {
			t.Fatal(err)
		}
		put(2) // evicts 1, the least recently used
		put(3) // evicts 0: read before 2 was written
		if got, want := indexKeys(t, s), []string{key(2), key(3)}; !slices.Equal(got, want) {
			t.Fatalf("round %d: kept %v, want %v", round, got, want)
		}
	}
}

func TestRedis(t *testing.T) {
	srv := testutil.StartRedis(t)
	s, err := OpenRedis(srv.URL(), Options{Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	checkStore(t, s)

	// TTL: a state unused for longer is gone.
	s2, _ := OpenRedis(srv.URL(), Options{TTL: 200 * time.Millisecond})
	defer s2.Close()
	s2.Put(ctx, engine.StoredState{Key: key(7), Tokens: 3}, value(7, 10))
	if _, err := s2.Get(ctx, key(7)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := s2.Get(ctx, key(7)); !errors.Is(err, engine.ErrStateNotFound) {
		t.Errorf("Get past the TTL: %v", err)
	}
	for _, k := range indexKeys(t, s2) {
		if k == key(7) {
			t.Error("the index lists a state past the TTL")
		}
	}

	// A server that is down is an error, and the client reconnects once
	// it is back (empty: nothing was saved).
	srv.Stop()
	if _, err := s.Index(ctx); err == nil {
		t.Error("Index with the server down: no error")
	}
	srv.Start()
	if got, err := s.Index(ctx); err != nil || len(got) != 0 {
		t.Errorf("Index after the restart: %v, %v", got, err)
	}

	if _, err := OpenRedis("http://127.0.0.1:1", Options{}); err == nil {
		t.Error("an http:// URL was taken")
	}
	if _, err := OpenRedis("http://user:s3cret@127.0.0.1:1", Options{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a bad URL with a password: %v", err)
	}
}

// TestRedisHung: a server that accepts connections and never answers
// fails each command at the caller's deadline, not at the client's
// 30-second socket timeouts.
func TestRedisHung(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s, err := OpenRedis("redis://"+ln.Addr().String()+"/0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Index(ctx); err == nil {
		t.Fatal("Index on a server that never answers: no error")
	}
	// The deadline, with a margin for this shared machine.
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Index returned after %v with a deadline of 300 ms", el)
	}
}

// FuzzParseName: a folder's file names (anything may be there) are taken
// only with a positive token count and a valid key, which Dir's own name
// for them reads back as.
func FuzzParseName(f *testing.F) {
	f.Add("state-12-" + key(1) + ".jstate")
	f.Add("state--1-" + key(1) + ".jstate")
	f.Add("state-12-../x.jstate")
	f.Fuzz(func(t *testing.T, name string) {
		tokens, k, ok := parseName(name)
		if !ok {
			return
		}
		if tokens <= 0 || !validKey(k) {
			t.Fatalf("%q gave %d tokens, key %q", name, tokens, k)
		}
		d := &Dir{dir: "d"}
		written := filepath.Base(d.name(engine.StoredState{Key: k, Tokens: tokens}))
		if t2, k2, ok := parseName(written); !ok || t2 != tokens || k2 != k {
			t.Fatalf("%q (%d tokens, key %q) is written %q, which reads back as %d, %q, %v", name, tokens, k, written, t2, k2, ok)
		}
	})
}

// FuzzParseEntry: an index entry of Redis (anything another client
// wrote) is taken only with a valid key, a positive token count and a
// size that is not negative, and then reads back as written.
func FuzzParseEntry(f *testing.F) {
	f.Add(key(1), "12 300 1700000000000")
	f.Add(key(1), "-1 300 5")
	f.Add("x", "1 1 1")
	f.Fuzz(func(t *testing.T, k, v string) {
		e, ok := parseEntry(k, v)
		if !ok {
			return
		}
		if e.Tokens <= 0 || e.Size < 0 || !validKey(e.Key) {
			t.Fatalf("%q %q taken as %+v", k, v, e)
		}
		if again, ok := parseEntry(k, entryValue(e.StoredState, e.used)); !ok || again != e {
			t.Fatalf("%+v reads back as %+v", e, again)
		}
	})
}
