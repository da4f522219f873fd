package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The worker pool runs the parallel kernels (MatMul, ScanSeq). It has one
// goroutine less than the thread count: the calling goroutine works too.
// Work is cut in chunks that the threads take in turn from an atomic
// counter, so a thread slowed by another process on a shared machine does
// not hold the others up. Calls from several goroutines are serialised.

// task is a parallel job; do is called once by each thread that takes part,
// with the thread index, and returns when no chunk is left.
type task interface {
	do(thread int)
}

// taskCounter hands out chunk indices.
type taskCounter struct {
	n atomic.Int64
}

// next returns the next chunk index below n, or -1 when none is left.
func (c *taskCounter) next(n int) int {
	i := int(c.n.Add(1) - 1)
	if i >= n {
		return -1
	}
	return i
}

type pool struct {
	mu      sync.Mutex
	threads int           // 0 until first use
	start   []chan task   // one per helper goroutine
	done    chan struct{} // one send per helper per run
	scratch []*scratch    // per thread
	matmul  matMulTask    // reused by MatMul
	prep    prepTask      // MatMul's rounding of the activations
	scan    scanTask      // reused by ScanSeq
	attn    attnTask      // reused by Attention
	attnS   []float32     // attentionSplit's scores of every head
	xq      xQuant        // MatMul's int16 copy of x for int8 weights
	xb      xQ8           // MatMul's 16-bit blocks of x for fused block weights
	xa      xAct8         // the same rounded to 8 bits (SetActivationBits(8))
}

var thePool pool

// minWorkPerThread is the smallest amount of work (in multiply-adds or bytes
// read) worth waking another thread for; a wake-up costs a few microseconds.
const minWorkPerThread = 1 << 16

// SetThreads sets the number of threads the kernels use; n < 1 means
// runtime.GOMAXPROCS(0). The default is GOMAXPROCS at first use.
func SetThreads(n int) {
	if n < 1 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &thePool
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resize(n)
}

// Threads returns the number of threads the kernels use.
func Threads() int {
	p := lockPool()
	defer p.mu.Unlock()
	return p.threads
}

// lockPool locks the pool, starting it on first use.
func lockPool() *pool {
	p := &thePool
	p.mu.Lock()
	if p.threads == 0 {
		p.resize(runtime.GOMAXPROCS(0))
	}
	return p
}

func (p *pool) resize(n int) {
	if n == p.threads {
		return
	}
	for _, c := range p.start {
		close(c)
	}
	p.start = make([]chan task, n-1)
	p.done = make(chan struct{}, n)
	for i := range p.start {
		c := make(chan task, 1)
		p.start[i] = c
		go func(c chan task, thread int) {
			for {
				t, ok := recvSpin(c)
				if !ok {
					return
				}
				t.do(thread)
				p.done <- struct{}{}
			}
		}(c, i+1)
	}
	for len(p.scratch) < n {
		p.scratch = append(p.scratch, newScratch())
	}
	p.threads = n
}

// run runs t on up to nchunks threads, fewer when work (an estimate of its
// cost) is too small to share, and returns when all of them are done. The
// caller holds p.mu.
func (p *pool) run(t task, nchunks, work int) {
	n := min(p.threads, nchunks, max(1, work/minWorkPerThread))
	for _, c := range p.start[:n-1] {
		c <- t
	}
	t.do(0)
	for range n - 1 {
		recvSpin(p.done)
	}
}

// spinTime is how long a thread polls for work, or for the others to finish,
// before it blocks. Waking a blocked goroutine on an idle core takes tens of
// microseconds, longer under a hypervisor: as long as a whole matrix-vector
// product of a few MiB. Decoding calls MatMul back to back, so a short poll
// catches the next call.
const spinTime = 50 * time.Microsecond

// recvSpin receives from c, polling for up to spinTime before it blocks.
func recvSpin[T any](c chan T) (T, bool) {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case v, ok := <-c:
			return v, ok
		default:
		}
		// Now and then let a goroutine waiting for this P run: a helper
		// that the caller woke from sleep sits in this P's run queue.
		// Yielding on every poll costs more than the poll (the scheduler
		// takes a global lock), and a spinning helper needs no yield.
		if i&15 == 15 {
			runtime.Gosched()
		} else {
			spinPause()
		}
		if i&255 == 255 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > spinTime {
				v, ok := <-c
				return v, ok
			}
		}
	}
}

// spinSink keeps spinPause's loop from being removed.
var spinSink atomic.Int32

// spinPause waits a few dozen cycles without touching shared memory.
func spinPause() {
	var x int32
	for i := range int32(32) {
		x += i
	}
	if x < 0 {
		spinSink.Store(x)
	}
}

// ParallelChunks returns how ParallelFor cuts n items: the number of
// chunks, at most Threads() of at least minChunk items each, and their
// length (the last may be shorter).
func ParallelChunks(n, minChunk int) (chunks, step int) {
	if n <= 0 {
		return 0, 0
	}
	minChunk = max(minChunk, 1)
	workers := max(1, min(Threads(), (n+minChunk-1)/minChunk))
	step = (n + workers - 1) / workers
	return (n + step - 1) / step, step
}

// ParallelFor calls fn(chunk, lo, hi) for each chunk of
// ParallelChunks(n, minChunk) on the kernels' threads, the caller's among
// them, and returns when all are done. The cut depends only on n,
// minChunk and Threads(), so per-chunk partial sums added in chunk order
// do not depend on timing. fn may call the vector kernels (Dot, Exp,
// SiLU, ...) but not MatMul, ScanSeq, Attention or ParallelFor, which
// would wait for the threads that run fn.
func ParallelFor(n, minChunk int, fn func(chunk, lo, hi int)) {
	chunks, step := ParallelChunks(n, minChunk)
	if chunks <= 1 {
		if n > 0 {
			fn(0, 0, n)
		}
		return
	}
	p := lockPool()
	defer p.mu.Unlock()
	t := &forTask{fn: fn, n: n, step: step, chunks: chunks}
	// Every chunk is worth a thread: callers choose minChunk for that.
	p.run(t, chunks, chunks*minWorkPerThread)
}

// forTask is ParallelFor's job: threads take chunks in turn.
type forTask struct {
	taskCounter
	fn              func(chunk, lo, hi int)
	n, step, chunks int
}

func (t *forTask) do(int) {
	for {
		c := t.next(t.chunks)
		if c < 0 {
			return
		}
		t.fn(c, c*t.step, min((c+1)*t.step, t.n))
	}
}
