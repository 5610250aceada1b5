package nbd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"golang.org/x/sync/semaphore"
)

// The full mode's transmission phase: one goroutine reads requests, up to
// MaxInFlight workers serve them, and replies go out whole under one lock,
// in whatever order they finish (requests carry handles for that).

// DefaultInFlight is how many requests of one connection the full mode
// serves at once unless Server.MaxInFlight says otherwise.
const DefaultInFlight = 16

// connReadBudget bounds the read buffers one connection holds at once: two
// of the largest reads, or many smaller ones.
const connReadBudget = 2 * maxServerRequest

// fullConn is one connection in the full mode's transmission phase.
type fullConn struct {
	sc   *serverConn
	exp  ServerExport
	size uint64

	slots  chan struct{}
	budget *semaphore.Weighted
	wg     sync.WaitGroup

	wmu sync.Mutex
	w   *bufio.Writer

	fmu   sync.Mutex
	fatal error
}

func (sc *serverConn) inFlight() int {
	if sc.s.MaxInFlight > 0 {
		return sc.s.MaxInFlight
	}
	return DefaultInFlight
}

// transmitFull serves requests until NBD_CMD_DISC, a dropped connection or
// a broken request, then waits for the requests in flight.
func (sc *serverConn) transmitFull(exp ServerExport) error {
	fc := &fullConn{
		sc: sc, exp: exp, size: uint64(exp.Size()),
		slots:  make(chan struct{}, sc.inFlight()),
		budget: semaphore.NewWeighted(connReadBudget),
		w:      bufio.NewWriterSize(sc.conn, 64<<10),
	}
	err := fc.readRequests(bufio.NewReader(sc.conn))
	if sc.s.ctx.Err() != nil {
		err = nil // the server is closing
	}
	fc.wg.Wait()
	fc.fmu.Lock()
	defer fc.fmu.Unlock()
	if fc.fatal != nil {
		return fc.fatal
	}
	return err
}

// fail records the connection's first fatal error and closes it, which
// also ends readRequests.
func (fc *fullConn) fail(err error) {
	fc.fmu.Lock()
	defer fc.fmu.Unlock()
	if fc.fatal == nil {
		fc.fatal = err
		fc.sc.conn.Close()
	}
}

func (fc *fullConn) failed() bool {
	fc.fmu.Lock()
	defer fc.fmu.Unlock()
	return fc.fatal != nil
}

func (fc *fullConn) readRequests(br *bufio.Reader) error {
	var h [requestLen]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || fc.failed() {
				return nil
			}
			return fmt.Errorf("reading a request: %w", err)
		}
		req, err := parseRequest(h[:])
		if err != nil {
			return err
		}
		switch req.typ {
		case cmdDisc:
			return nil
		case cmdWrite:
			if req.length > maxServerRequest {
				return fmt.Errorf("%w: a write of %d bytes", ErrProtocol, req.length)
			}
			if _, err := br.Discard(int(req.length)); err != nil {
				return fmt.Errorf("reading a write's payload: %w", err)
			}
		}
		if err := fc.dispatch(req); err != nil {
			return err
		}
	}
}

// dispatch starts a worker for req once a slot and, for a read, its
// buffer's share of the budget are free.
func (fc *fullConn) dispatch(req request) error {
	var weight int64
	if req.typ == cmdRead && req.length <= maxServerRequest {
		weight = int64(req.length)
	}
	select {
	case fc.slots <- struct{}{}:
	case <-fc.sc.s.ctx.Done():
		return fc.sc.s.ctx.Err()
	}
	if err := fc.budget.Acquire(fc.sc.s.ctx, weight); err != nil {
		<-fc.slots
		return err
	}
	fc.wg.Add(1)
	go func() {
		defer fc.wg.Done()
		defer func() { <-fc.slots }()
		defer fc.budget.Release(weight)
		if err := fc.serve(req); err != nil {
			fc.fail(err)
		}
	}()
	return nil
}

// allowedFlags are the command flags each request may carry; FUA is
// meaningless on a read-only export and ignored.
func (fc *fullConn) allowedFlags(typ uint16) uint16 {
	switch typ {
	case cmdRead:
		if fc.sc.structured {
			return cmdFlagFUA | cmdFlagDF
		}
	case cmdBlockStatus:
		return cmdFlagFUA | cmdFlagReqOne
	case cmdWriteZeroes:
		return cmdFlagFUA | cmdFlagNoHole
	}
	return cmdFlagFUA
}

// serve answers one request; an error is fatal to the connection.
func (fc *fullConn) serve(req request) error {
	if req.flags&^fc.allowedFlags(req.typ) != 0 {
		return fc.replyErr(req, EINVAL, "unknown or misplaced command flags")
	}
	switch req.typ {
	case cmdRead:
		return fc.read(req)
	case cmdBlockStatus:
		return fc.blockStatus(req)
	case cmdFlush:
		return fc.replyErr(req, 0, "")
	case cmdCache:
		if !fc.inRange(req) {
			return fc.replyErr(req, EINVAL, "the range is beyond the end of the export")
		}
		return fc.replyErr(req, 0, "")
	case cmdWrite, cmdTrim, cmdWriteZeroes:
		return fc.replyErr(req, EPERM, "the export is read-only")
	}
	return fc.replyErr(req, EINVAL, "unsupported command")
}

func (fc *fullConn) inRange(req request) bool {
	return req.offset <= fc.size && uint64(req.length) <= fc.size-req.offset
}

// checkRange refuses a read or block-status request that is empty, beyond
// the export or, when limit > 0, longer than limit.
func (fc *fullConn) checkRange(req request, limit uint32) (errno uint32, msg string) {
	switch {
	case req.length == 0:
		return EINVAL, "a request of 0 bytes"
	case !fc.inRange(req):
		return EINVAL, "the range is beyond the end of the export"
	case limit > 0 && req.length > limit:
		return EOVERFLOW, "the request is longer than the server's maximum of 32 MiB"
	}
	return 0, ""
}

// send writes one whole reply under the write lock.
func (fc *fullConn) send(parts ...[]byte) error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	for _, p := range parts {
		if _, err := fc.w.Write(p); err != nil {
			return fmt.Errorf("sending a reply: %w", err)
		}
	}
	if err := fc.w.Flush(); err != nil {
		return fmt.Errorf("sending a reply: %w", err)
	}
	return nil
}

// replyErr sends success (errno 0) or an error, structured when the
// client negotiated structured replies; msg is for the client's user.
func (fc *fullConn) replyErr(req request, errno uint32, msg string) error {
	if !fc.sc.structured {
		b := make([]byte, replyLen)
		simpleReply{errno: errno, handle: req.handle}.marshal(b)
		return fc.send(b)
	}
	if errno == 0 {
		return fc.send(chunkHeader(replyFlagDone, replyNone, req.handle, 0))
	}
	return fc.send(errorChunk(req.handle, errno, msg, nil))
}
