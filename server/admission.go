package server

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ConnLimiter bounds the open connections of an http.Server without
// letting idle keep-alive connections starve new clients: when every slot
// is taken, the connection idle the longest is closed to make room, and
// while a new connection waits, every connection that turns idle is closed
// at once. Connections in the middle of a request are never closed by it.
//
// Use both halves: serve on Listener(ln) and set the http.Server's
// ConnState to the limiter's ConnState.
type ConnLimiter struct {
	sem  chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	idle    map[net.Conn]time.Time // idle keep-alive connections, since when
	waiting int                    // Accept calls waiting for a slot
	evicted int64
}

// NewConnLimiter returns a limiter of n open connections.
func NewConnLimiter(n int) *ConnLimiter {
	return &ConnLimiter{sem: make(chan struct{}, n), done: make(chan struct{}), idle: map[net.Conn]time.Time{}}
}

// Evicted is the number of idle connections closed to make room.
func (l *ConnLimiter) Evicted() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.evicted
}

// Listener wraps ln so that Accept takes a slot, first closing the oldest
// idle connection when none is free.
func (l *ConnLimiter) Listener(ln net.Listener) net.Listener {
	return &limiterListener{Listener: ln, l: l}
}

// ConnState is the http.Server hook that tells the limiter which
// connections are idle.
func (l *ConnLimiter) ConnState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	switch st {
	case http.StateIdle:
		if l.waiting > 0 {
			l.evicted++
			l.mu.Unlock()
			c.Close()
			return
		}
		l.idle[c] = time.Now()
	case http.StateActive:
		delete(l.idle, c)
	case http.StateClosed, http.StateHijacked:
		delete(l.idle, c)
	}
	l.mu.Unlock()
}

// evictOldest closes the connection idle the longest, if any.
func (l *ConnLimiter) evictOldest() {
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	if oldest != nil {
		delete(l.idle, oldest)
		l.evicted++
		go oldest.Close()
	}
}

type limiterListener struct {
	net.Listener
	l *ConnLimiter
}

func (ll *limiterListener) Accept() (net.Conn, error) {
	l := ll.l
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	default:
		l.mu.Lock()
		l.waiting++
		l.evictOldest()
		l.mu.Unlock()
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
		}
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
		select {
		case <-l.done:
			return nil, net.ErrClosed
		default:
		}
	}
	c, err := ll.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (ll *limiterListener) Close() error {
	ll.l.once.Do(func() { close(ll.l.done) })
	return ll.Listener.Close()
}
