package statestore

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jamba-go/jamba/engine"
)

// Redis keeps the states in a Redis server (or anything that speaks its
// protocol: Valkey, KeyDB, a managed service), which several servers
// share. Each state is a string key, jamba:state:KEY; the hash
// jamba:states lists them (field KEY, value "TOKENS SIZE LASTUSEDMS"),
// which is what Index reads and what the budget is counted on. A state
// key that expired or that the server evicted (its maxmemory policy) while
// its entry remains is a miss, and the entry is dropped.
//
// Several servers write at once without locks: the budget may be
// overshot by what they write at the same moment, until the next Put.
type Redis struct {
	c    *redis.Client
	opts Options
	addr string
}

const (
	redisIndex  = "jamba:states"
	redisPrefix = "jamba:state:"
)

// quietLog drops the client library's own log lines: every failure it
// meets comes back as an error, which the engine reports.
type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietLog{}) }

// OpenRedis connects to the server of url: redis://[[USER]:PASSWORD@]HOST:PORT/DB,
// rediss:// for TLS, or unix://[[USER]:PASSWORD@]/PATH?db=N. It does not
// wait for the server: one that is down is a miss on every request until
// it answers (Ping says whether it does).
func OpenRedis(url string, opts Options) (*Redis, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		// The URL may hold a password: only its redacted form is shown.
		shown := "(not a URL)"
		if u, perr := neturl.Parse(url); perr == nil {
			shown = u.Redacted()
		}
		msg := strings.ReplaceAll(err.Error(), url, shown)
		return nil, fmt.Errorf("state store %s: %s", shown, msg)
	}
	// States are large: a write of a few hundred MiB must not time out
	// on a fast network. Commands are not retried: a miss costs less.
	o.ReadTimeout, o.WriteTimeout = 30*time.Second, 30*time.Second
	o.MaxRetries = -1
	o.DialTimeout = 2 * time.Second
	o.ContextTimeoutEnabled = true // the engine's deadlines bound each command
	return &Redis{c: redis.NewClient(o), opts: opts, addr: o.Addr}, nil
}

// Addr is the server's address.
func (r *Redis) Addr() string { return r.addr }

// Ping checks that the server answers.
func (r *Redis) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }

// Close closes the connections.
func (r *Redis) Close() error { return r.c.Close() }

type redisEntry struct {
	engine.StoredState
	used int64 // ms since the epoch
}

func parseEntry(key, v string) (redisEntry, bool) {
	f := strings.Fields(v)
	if len(f) != 3 || !validKey(key) {
		return redisEntry{}, false
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	used, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || n <= 0 || size < 0 {
		return redisEntry{}, false
	}
	return redisEntry{StoredState: engine.StoredState{Key: key, Tokens: n, Size: size}, used: used}, true
}

func entryValue(st engine.StoredState, used int64) string {
	return fmt.Sprintf("%d %d %d", st.Tokens, st.Size, used)
}

// entries reads the index; malformed fields and those past the TTL are
// dropped from it.
func (r *Redis) entries(ctx context.Context) ([]redisEntry, error) {
	m, err := r.c.HGetAll(ctx, redisIndex).Result()
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	var out []redisEntry
	var stale []string
	for k, v := range m {
		e, ok := parseEntry(k, v)
		if !ok || r.opts.TTL > 0 && now-e.used > r.opts.TTL.Milliseconds() {
			stale = append(stale, k)
			continue
		}
		out = append(out, e)
	}
	if len(stale) > 0 {
		r.remove(ctx, stale)
	}
	return out, nil
}

// remove deletes states and their index entries.
func (r *Redis) remove(ctx context.Context, keys []string) error {
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = redisPrefix + k
		}
		p.Del(ctx, names...)
		p.HDel(ctx, redisIndex, keys...)
		return nil
	})
	return err
}

// Index lists the states.
func (r *Redis) Index(ctx context.Context) ([]engine.StoredState, error) {
	es, err := r.entries(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]engine.StoredState, len(es))
	for i, e := range es {
		out[i] = e.StoredState
	}
	return out, nil
}

// Get reads key's state and marks it used (which restarts its TTL).
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := r.c.Get(ctx, redisPrefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", key, engine.ErrStateNotFound)
	}
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	st := engine.StoredState{Key: key, Size: int64(len(data))}
	if v, err := r.c.HGet(ctx, redisIndex, key).Result(); err == nil {
		if e, ok := parseEntry(key, v); ok {
			st.Tokens = e.Tokens
		}
	}
	if st.Tokens > 0 {
		r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, redisIndex, key, entryValue(st, now))
			if r.opts.TTL > 0 {
				p.PExpire(ctx, redisPrefix+key, r.opts.TTL)
				p.PExpire(ctx, redisIndex, r.opts.TTL)
			}
			return nil
		})
	}
	return data, nil
}

// Put stores the state with its index entry in one transaction, then
// removes the least recently used states beyond the budget and the entry
// limit.
func (r *Redis) Put(ctx context.Context, st engine.StoredState, data []byte) error {
	if !validKey(st.Key) || st.Tokens <= 0 {
		return fmt.Errorf("state store: bad key %q of %d tokens", st.Key, st.Tokens)
	}
	if r.opts.Budget > 0 && int64(len(data)) > r.opts.Budget {
		return fmt.Errorf("a state of %d bytes is larger than the budget of %d bytes", len(data), r.opts.Budget)
	}
	st.Size = int64(len(data))
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, redisPrefix+st.Key, data, r.opts.TTL)
		p.HSet(ctx, redisIndex, st.Key, entryValue(st, time.Now().UnixMilli()))
		if r.opts.TTL > 0 {
			p.PExpire(ctx, redisIndex, r.opts.TTL)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if r.opts.Budget <= 0 && r.opts.MaxEntries <= 0 {
		return nil
	}
	es, err := r.entries(ctx)
	if err != nil {
		return err
	}
	sort.Slice(es, func(i, j int) bool { return es[i].used < es[j].used })
	var total int64
	for _, e := range es {
		total += e.Size
	}
	n := len(es)
	var drop []string
	for _, e := range es {
		if !(r.opts.Budget > 0 && total > r.opts.Budget || r.opts.MaxEntries > 0 && n > r.opts.MaxEntries) {
			break
		}
		if e.Key == st.Key {
			continue
		}
		drop = append(drop, e.Key)
		total -= e.Size
		n--
	}
	if len(drop) > 0 {
		return r.remove(ctx, drop)
	}
	return nil
}

// Delete removes key's state.
func (r *Redis) Delete(ctx context.Context, key string) error {
	return r.remove(ctx, []string{key})
}
