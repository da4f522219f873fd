package kernels

import (
	"slices"
	"sync"
	"time"
)

// MeasureReadBandwidth returns this machine's memory read bandwidth in GB/s
// (10⁹ bytes per second): threads goroutines (threads < 1 means Threads())
// sum disjoint parts of a buffer of the given size (use at least 4 times the
// last-level cache, e.g. 1 GiB) with the same vector loads as the matrix
// kernels. It touches the buffer once, then times 5 passes and returns the
// median. It allocates the buffer and takes about 6 passes' time; it is meant
// to be called once, next to a measurement that it is a yardstick for.
func MeasureReadBandwidth(bytes int, threads int) float64 {
	m := NewReadMeter(bytes, threads)
	gbs := make([]float64, 5)
	for i := range gbs {
		gbs[i] = m.Pass()
	}
	slices.Sort(gbs)
	return gbs[len(gbs)/2]
}

// A ReadMeter measures read bandwidth one pass at a time, so that the passes
// can be interleaved with the work they are a yardstick for: on a machine
// shared with others the bandwidth left to a process changes from second to
// second, and a yardstick taken at another moment than the work misleads.
type ReadMeter struct {
	buf     []float32
	threads int
}

// NewReadMeter allocates a buffer of the given size (use at least 4 times
// the last-level cache) and touches it once; its passes use threads
// goroutines (threads < 1 means Threads()).
func NewReadMeter(bytes, threads int) *ReadMeter {
	if threads < 1 {
		threads = Threads()
	}
	buf := make([]float32, max(bytes/4, 32*threads))
	for i := range buf {
		buf[i] = 1
	}
	readPass(buf, threads)
	return &ReadMeter{buf: buf, threads: threads}
}

// Pass reads the whole buffer once and returns the bandwidth in GB/s.
func (m *ReadMeter) Pass() float64 {
	d := readPass(m.buf, m.threads)
	return float64(len(m.buf)*4) / d.Seconds() / 1e9
}

// readPass sums buf in threads parts at once and returns the time taken.
func readPass(buf []float32, threads int) time.Duration {
	per := len(buf) / threads &^ 31
	var wg sync.WaitGroup
	sums := make([]float32, threads)
	start := time.Now()
	for i := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i] = sumRead(buf[i*per : (i+1)*per])
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if sums[0] < 0 { // never: keeps the sums alive
		return 0
	}
	return d
}
