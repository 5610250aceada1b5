package allocs

import "runtime"

// Least is the fewest bytes f allocated over a few runs. TotalAlloc is
// process-wide, so one run can count another goroutine's allocations (the
// test runner's, the GC's); code that really allocates for a huge count
// does so on every run.
func Least(f func()) uint64 {
	least := uint64(1<<64 - 1)
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}
