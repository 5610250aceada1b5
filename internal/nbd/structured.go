package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Reads and block status in the full mode, and the structured reply
// chunks they are sent in.

// Extent is a run of an export's bytes: data, or a hole that reads as
// zeros.
type Extent struct {
	Len  int64
	Hole bool
}

// ExtentsExport is a ServerExport that knows where its holes are. Extents
// describes the bytes from off on as contiguous extents, each longer than
// zero; they may end before off+length (the server asks again from where
// they end) or after it (the server cuts them). Exports without it are all
// data.
type ExtentsExport interface {
	ServerExport
	Extents(ctx context.Context, off, length int64) ([]Extent, error)
}

// maxExtents bounds the extents of one read or one block-status reply; a
// read whose range has more is served as data past them, a block status
// reply covers less than asked, as the protocol allows.
const maxExtents = 1 << 16

// maxExtentCalls bounds the Extents calls of one request, so an export
// answering in tiny steps cannot keep a worker busy.
const maxExtentCalls = 64

// piece is one extent placed in the export.
type piece struct {
	off, len uint64
	hole     bool
}

// chunkHeader is the header of a structured reply chunk.
func chunkHeader(flags, typ uint16, handle uint64, length uint32) []byte {
	b := make([]byte, chunkHdrLen)
	binary.BigEndian.PutUint32(b[0:], magicStructRep)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint32(b[16:], length)
	return b
}

// errorChunk is a final error chunk, NBD_REPLY_TYPE_ERROR_OFFSET when off
// is set, NBD_REPLY_TYPE_ERROR otherwise.
func errorChunk(handle uint64, errno uint32, msg string, off *uint64) []byte {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	typ, n := replyError, 6+len(msg)
	if off != nil {
		typ, n = replyErrorOff, n+8
	}
	b := chunkHeader(replyFlagDone, typ, handle, uint32(n))
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	if off != nil {
		b = binary.BigEndian.AppendUint64(b, *off)
	}
	return b
}

// extents returns the pieces of [off, off+length), merged where alike, at
// most limit of them and covering at most length: less only when the limit
// cut them.
func (fc *fullConn) extents(off, length uint64, limit int) ([]piece, error) {
	ee, ok := fc.exp.(ExtentsExport)
	if !ok {
		return []piece{{off: off, len: length}}, nil
	}
	var ps []piece
	pos, end := off, off+length
	for calls := 0; pos < end && len(ps) < limit && calls < maxExtentCalls; calls++ {
		exts, err := ee.Extents(fc.sc.s.ctx, int64(pos), int64(end-pos))
		if err != nil {
			return nil, fmt.Errorf("asking for the extents at offset %d: %w", pos, err)
		}
		if len(exts) == 0 {
			return nil, fmt.Errorf("the export reported no extents at offset %d", pos)
		}
		for _, e := range exts {
			if e.Len <= 0 {
				return nil, fmt.Errorf("the export reported an extent of %d bytes at offset %d", e.Len, pos)
			}
			n := min(uint64(e.Len), end-pos)
			if k := len(ps) - 1; k >= 0 && ps[k].hole == e.Hole {
				ps[k].len += n
			} else if len(ps) < limit {
				ps = append(ps, piece{off: pos, len: n, hole: e.Hole})
			} else {
				return ps, nil
			}
			if pos += n; pos == end {
				break
			}
		}
	}
	return ps, nil
}

// read answers NBD_CMD_READ.
func (fc *fullConn) read(req request) error {
	if errno, msg := fc.checkRange(req, maxServerRequest); errno != 0 {
		return fc.replyErr(req, errno, msg)
	}
	if !fc.sc.structured {
		return fc.readSimple(req)
	}
	ps := []piece{{off: req.offset, len: uint64(req.length)}}
	if req.flags&cmdFlagDF == 0 {
		var err error
		if ps, err = fc.extents(req.offset, uint64(req.length), maxExtents); err != nil {
			fc.sc.s.logf("nbd: read of %d bytes at offset %d: %v", req.length, req.offset, err)
			return fc.replyErr(req, EIO, "the server could not map the export")
		}
		if last := ps[len(ps)-1]; last.off+last.len < req.offset+uint64(req.length) {
			ps = append(ps, piece{off: last.off + last.len, len: req.offset + uint64(req.length) - last.off - last.len})
		}
	}
	var buf []byte // stays nil for a read of holes only
	for _, p := range ps {
		if p.hole {
			continue
		}
		if buf == nil {
			buf = make([]byte, req.length)
		}
		if err := fc.readAt(buf[p.off-req.offset:][:p.len], p.off); err != nil {
			return fc.readFailed(req, p.off, err)
		}
	}
	return fc.sendPieces(req, ps, buf)
}

// readAt fills b from the export at off.
func (fc *fullConn) readAt(b []byte, off uint64) error {
	n, err := fc.exp.ReadAt(b, int64(off))
	if n == len(b) && !errors.Is(err, ErrDropConnection) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readFailed answers a read the export failed, or drops the connection
// when its error says so.
func (fc *fullConn) readFailed(req request, off uint64, err error) error {
	if errors.Is(err, ErrDropConnection) {
		return fmt.Errorf("dropping the connection on a read at offset %d: %w", off, err)
	}
	fc.sc.s.logf("nbd: read of %d bytes at offset %d: %v", req.length, req.offset, err)
	if !fc.sc.structured {
		return fc.replyErr(req, EIO, "")
	}
	return fc.send(errorChunk(req.handle, EIO, "the server could not read the export", &off))
}

func (fc *fullConn) readSimple(req request) error {
	msg := make([]byte, replyLen+int(req.length))
	if err := fc.readAt(msg[replyLen:], req.offset); err != nil {
		return fc.readFailed(req, req.offset, err)
	}
	simpleReply{handle: req.handle}.marshal(msg)
	return fc.send(msg)
}

// sendPieces sends a read's pieces as OFFSET_HOLE and OFFSET_DATA chunks,
// the last one flagged done.
func (fc *fullConn) sendPieces(req request, ps []piece, buf []byte) error {
	parts := make([][]byte, 0, 2*len(ps))
	for i, p := range ps {
		var flags uint16
		if i == len(ps)-1 {
			flags = replyFlagDone
		}
		if p.hole {
			h := chunkHeader(flags, replyOffsetHole, req.handle, 12)
			h = binary.BigEndian.AppendUint64(h, p.off)
			parts = append(parts, binary.BigEndian.AppendUint32(h, uint32(p.len)))
			continue
		}
		h := chunkHeader(flags, replyOffsetData, req.handle, uint32(8+p.len))
		parts = append(parts, binary.BigEndian.AppendUint64(h, p.off), buf[p.off-req.offset:][:p.len])
	}
	return fc.send(parts...)
}

// blockStatus answers NBD_CMD_BLOCK_STATUS for "base:allocation".
func (fc *fullConn) blockStatus(req request) error {
	if !fc.sc.meta.allocation {
		return fc.replyErr(req, EINVAL, "no meta context was selected for this export")
	}
	if errno, msg := fc.checkRange(req, 0); errno != 0 {
		return fc.replyErr(req, errno, msg)
	}
	limit := maxExtents
	if req.flags&cmdFlagReqOne != 0 {
		limit = 1
	}
	ps, err := fc.extents(req.offset, uint64(req.length), limit)
	if err != nil {
		fc.sc.s.logf("nbd: block status of %d bytes at offset %d: %v", req.length, req.offset, err)
		return fc.replyErr(req, EIO, "the server could not map the export")
	}
	b := chunkHeader(replyFlagDone, replyBlockStat, req.handle, uint32(4+8*len(ps)))
	b = binary.BigEndian.AppendUint32(b, allocationID)
	for _, p := range ps {
		var state uint32
		if p.hole {
			state = stateHole | stateZero
		}
		b = binary.BigEndian.AppendUint32(b, uint32(p.len))
		b = binary.BigEndian.AppendUint32(b, state)
	}
	return fc.send(b)
}
