package source

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/cofferhq/coffer/internal/nbd"
)

// NBDSource is a disk read over NBD: a XenServer VDI from xapi's NBD
// server, through a bounded pool of connections that reconnects and
// retries a read when a connection drops. NBD says nothing of holes, so
// every byte is data to the pipeline (zero blocks are still found, and
// not stored); a changed-block night reads only the blocks that changed.
type NBDSource struct {
	r     *nbd.Reader
	path  string
	size  int64
	ahead *spans // nil: no read-ahead
}

// OpenNBD opens a VDI of size bytes, as XenServer reports it, over NBD;
// path names it in messages. A server that says the export has another
// size is refused: reading it would back up the wrong disk.
func OpenNBD(ctx context.Context, path string, size int64, dial func(context.Context) (*nbd.Conn, error), opt nbd.ReaderOptions) (*NBDSource, error) {
	r, err := nbd.NewReader(ctx, dial, opt)
	if err != nil {
		return nil, &SourceError{Path: path, Err: fmt.Errorf("connecting to %s over NBD: %w", path, err)}
	}
	if r.Size() != size {
		r.Close()
		return nil, Errorf(path, "the NBD server says %s has %d bytes, XenServer says %d: not backed up (a server that disagrees about a disk's size cannot be trusted to serve it)", path, r.Size(), size)
	}
	if size <= 0 {
		r.Close()
		return nil, Errorf(path, "%s is empty (0 bytes): there is nothing to back up", path)
	}
	return &NBDSource{r: r, path: path, size: size}, nil
}

// ReadAt implements io.ReaderAt.
func (s *NBDSource) ReadAt(p []byte, off int64) (int, error) {
	if ok, err := s.readAhead(p, off); ok {
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	// A large read that starts in a span fetched already takes that part
	// from it.
	n := s.cached(p, off)
	if n == len(p) {
		return n, nil
	}
	m, err := s.r.ReadAt(p[n:], off+int64(n))
	return n + m, err
}

// cached copies into p what the read-ahead holds of the span p starts in.
func (s *NBDSource) cached(p []byte, off int64) int {
	a := s.ahead
	if a == nil {
		return 0
	}
	base := off &^ (readAheadSpan - 1)
	a.mu.Lock()
	span, ok := a.data[base]
	a.mu.Unlock()
	if !ok {
		return 0
	}
	return copy(p, span[off-base:])
}

// Size implements Source.
func (s *NBDSource) Size() int64 { return s.size }

// Path implements Source.
func (s *NBDSource) Path() string { return s.path }

// DataRanges implements Source: all of [off, off+n) may hold data.
func (s *NBDSource) DataRanges(off, n int64) ([][2]int64, error) {
	if n <= 0 {
		return nil, nil
	}
	return [][2]int64{{off, off + n}}, nil
}

// Recheck implements Source: a VDI snapshot does not change.
func (s *NBDSource) Recheck() error { return nil }

// Close implements Source: it disconnects every connection, which detaches
// the VDI from the host's control domain.
func (s *NBDSource) Close() error { return s.r.Close() }

// Stats returns the NBD reader's counters.
func (s *NBDSource) Stats() nbd.ReaderStats { return s.r.Stats() }

// readAheadSpan is what a small read of an NBDSource with read-ahead
// fetches: the aligned span around it.
const readAheadSpan = 1 << 20

// readAheadSpans is how many spans an NBDSource keeps.
const readAheadSpans = 16

// spans is an NBDSource's read-ahead: the last spans fetched, by offset.
type spans struct {
	mu    sync.Mutex
	data  map[int64][]byte
	order []int64
}

// SetReadAhead makes small reads fetch the aligned MiB around them and
// keep it for the next ones. A full read checks every 64 KiB block for
// zeros one at a time (NBD says nothing of holes), and each check would
// otherwise be a request; a changed-block read, which must read only the
// changed blocks, leaves it off.
func (s *NBDSource) SetReadAhead(on bool) {
	if on {
		s.ahead = &spans{data: map[int64][]byte{}}
	} else {
		s.ahead = nil
	}
}

// readAhead serves p from the span around off, fetching it when needed,
// and reports whether it could.
func (s *NBDSource) readAhead(p []byte, off int64) (bool, error) {
	a := s.ahead
	base := off &^ (readAheadSpan - 1)
	if a == nil || len(p) > readAheadSpan/4 || off+int64(len(p)) > base+readAheadSpan || off+int64(len(p)) > s.size {
		return false, nil
	}
	a.mu.Lock()
	span, ok := a.data[base]
	a.mu.Unlock()
	if !ok {
		span = make([]byte, min(readAheadSpan, s.size-base))
		if _, err := s.r.ReadAt(span, base); err != nil && err != io.EOF {
			return true, err
		}
		a.mu.Lock()
		a.data[base] = span
		a.order = append(a.order, base)
		if len(a.order) > readAheadSpans {
			delete(a.data, a.order[0])
			a.order = a.order[1:]
		}
		a.mu.Unlock()
	}
	copy(p, span[off-base:])
	return true, nil
}
