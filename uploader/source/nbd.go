package source

import (
	"context"
	"fmt"

	"github.com/cofferhq/coffer/internal/nbd"
)

// NBDSource is a disk read over NBD: a XenServer VDI from xapi's NBD
// server, through a bounded pool of connections that reconnects and
// retries a read when a connection drops. NBD says nothing of holes, so
// every byte is data to the pipeline (zero blocks are still found, and
// not stored); a changed-block night reads only the blocks that changed.
type NBDSource struct {
	r    *nbd.Reader
	path string
	size int64
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
func (s *NBDSource) ReadAt(p []byte, off int64) (int, error) { return s.r.ReadAt(p, off) }

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
