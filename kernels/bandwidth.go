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
	if threads < 1 {
		threads = Threads()
	}
	per := max(bytes/4/threads, 32) &^ 31 // float32 per thread, a multiple of 32
	buf := make([]float32, per*threads)
	for i := range buf {
		buf[i] = 1
	}
	var sink float32
	var mu sync.Mutex
	pass := func() time.Duration {
		var wg sync.WaitGroup
		startAt := time.Now()
		for i := range threads {
			wg.Add(1)
			go func(part []float32) {
				defer wg.Done()
				s := sumRead(part)
				mu.Lock()
				sink += s
				mu.Unlock()
			}(buf[i*per : (i+1)*per])
		}
		wg.Wait()
		return time.Since(startAt)
	}
	pass()
	times := make([]time.Duration, 5)
	for i := range times {
		times[i] = pass()
	}
	slices.Sort(times)
	if sink < 0 { // never: keeps the sums alive
		return 0
	}
	return float64(len(buf)*4) / times[len(times)/2].Seconds() / 1e9
}
