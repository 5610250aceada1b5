package vault

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// errDigestMismatch is returned by verifyReader's final Read when the body's
// SHA-256 differs from the object's name.
var errDigestMismatch = errors.New("body does not match its name")

// verifyReader streams exactly size bytes of an upload body. Every Read feeds
// SHA-256; the Read that completes the object checks the digest before it
// returns the last bytes, and on a mismatch returns errDigestMismatch instead,
// so a store never receives a whole object with the wrong content. EOF before
// size bytes is io.ErrUnexpectedEOF.
//
// If rc is set, the read deadline is pushed forward by window each time
// floor*window bytes have arrived, so a client slower than the floor gets a
// deadline error (answered 408).
type verifyReader struct {
	r    io.Reader
	size int64
	n    int64
	want []byte // nil: not content-named
	h    hash.Hash
	err  error

	rc        *http.ResponseController
	clock     func() time.Time
	window    time.Duration
	perWindow int64 // bytes needed per window; 0 = no floor
	inWindow  int64
	progress  func(n int)

	// check, if set, is called every checkEvery while bytes arrive and
	// before the last bytes are returned; its error ends the upload.
	check      func() error
	checkEvery time.Duration
	checkedAt  time.Time
}

func newVerifyReader(r io.Reader, size int64, want []byte) *verifyReader {
	return &verifyReader{r: r, size: size, want: want, h: sha256.New()}
}

// startDeadlines arms the slow-client floor in place of the body deadline;
// with no floor the body has no deadline.
func (v *verifyReader) startDeadlines(rc *http.ResponseController, now func() time.Time, floor int64, window time.Duration) {
	if rc == nil {
		return
	}
	if floor <= 0 || window <= 0 {
		_ = rc.SetReadDeadline(time.Time{})
		return
	}
	v.rc, v.clock, v.window = rc, now, window
	v.perWindow = max(1, int64(float64(floor)*window.Seconds()))
	_ = rc.SetReadDeadline(now().Add(window))
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	rem := v.size - v.n
	if rem == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := v.r.Read(p)
	if n > 0 {
		v.h.Write(p[:n])
		v.n += int64(n)
		if v.progress != nil {
			v.progress(n)
		}
		if v.perWindow > 0 {
			v.inWindow += int64(n)
			if v.inWindow >= v.perWindow {
				v.inWindow = 0
				_ = v.rc.SetReadDeadline(v.clock().Add(v.window))
			}
		}
	}
	if n > 0 && v.check != nil && (v.n == v.size || v.clock().Sub(v.checkedAt) >= v.checkEvery) {
		v.checkedAt = v.clock()
		if cerr := v.check(); cerr != nil {
			v.err = cerr
			return 0, v.err
		}
	}
	if v.n == v.size {
		if v.want != nil && subtle.ConstantTimeCompare(v.h.Sum(nil), v.want) != 1 {
			v.err = errDigestMismatch
			return 0, v.err
		}
		return n, nil
	}
	switch {
	case err == io.EOF:
		v.err = io.ErrUnexpectedEOF
		return n, v.err
	case err != nil:
		v.err = err
		return n, err
	}
	return n, nil
}

// recheck makes the upload call check every interval while bytes arrive,
// and once more before the last bytes go to the store.
func (v *verifyReader) recheck(now func() time.Time, every time.Duration, check func() error) {
	v.clock, v.checkEvery, v.check = now, every, check
	v.checkedAt = now()
}

// errNotSequential is what seqReaderAt answers to an out-of-order read: the
// body streams once, so a store that wants to re-read it (a retry) must fail.
var errNotSequential = errors.New("upload body can be read only once, in order")

// seqReaderAt exposes a stream as the io.ReaderAt that store.Put takes, for
// in-order reads only. Nothing is buffered.
type seqReaderAt struct {
	mu   sync.Mutex
	r    io.Reader
	off  int64
	size int64
}

func (s *seqReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off != s.off {
		return 0, &store.PermanentError{Err: fmt.Errorf("%w (offset %d, expected %d)", errNotSequential, off, s.off)}
	}
	if off >= s.size {
		return 0, io.EOF
	}
	short := false
	if rem := s.size - off; int64(len(p)) > rem {
		p, short = p[:rem], true
	}
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}
