package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The wire constants of the fixed-newstyle protocol, limited to what xapi's
// NBD server speaks (NetworkBlockDevice/nbd doc/proto.md names them).
const (
	magicNBD       uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt       uint64 = 0x49484156454f5054 // "IHAVEOPT"
	magicOldstyle  uint64 = 0x0000420281861253
	magicOptReply  uint64 = 0x0003e889045565a9
	magicRequest   uint32 = 0x25609513
	magicReply     uint32 = 0x67446698
	magicStructRep uint32 = 0x668e33ef

	flagFixedNewstyle uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1

	clientFixedNewstyle uint32 = 1 << 0
	clientNoZeroes      uint32 = 1 << 1

	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optStartTLS        uint32 = 5
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
	optListMetaContext uint32 = 9
	optSetMetaContext  uint32 = 10

	repAck         uint32 = 1
	repServer      uint32 = 2
	repInfo        uint32 = 3
	repMetaContext uint32 = 4
	repErrBit      uint32 = 1 << 31
	repErrUnsup    uint32 = repErrBit | 1
	repErrPolicy   uint32 = repErrBit | 2
	repErrInvalid  uint32 = repErrBit | 3
	repErrTLSReqd  uint32 = repErrBit | 5
	repErrUnknown  uint32 = repErrBit | 6

	infoExport    uint16 = 0
	infoBlockSize uint16 = 3

	transHasFlags     uint16 = 1 << 0
	transReadOnly     uint16 = 1 << 1
	transSendFlush    uint16 = 1 << 2
	transSendDF       uint16 = 1 << 7
	transCanMultiConn uint16 = 1 << 8
	transSendCache    uint16 = 1 << 10

	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdCache       uint16 = 5
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7

	cmdFlagFUA    uint16 = 1 << 0
	cmdFlagNoHole uint16 = 1 << 1
	cmdFlagDF     uint16 = 1 << 2
	cmdFlagReqOne uint16 = 1 << 3

	replyFlagDone   uint16 = 1 << 0
	replyNone       uint16 = 0
	replyOffsetData uint16 = 1
	replyOffsetHole uint16 = 2
	replyBlockStat  uint16 = 5
	replyError      uint16 = 1<<15 | 1
	replyErrorOff   uint16 = 1<<15 | 2

	// stateHole|stateZero is how base:allocation describes a hole.
	stateHole uint32 = 1 << 0
	stateZero uint32 = 1 << 1

	// SectorSize is the alignment xapi requires of every read's offset and
	// length.
	SectorSize = 512
	// MaxRequest is the largest read the client sends in one request (what
	// Xen Orchestra reads per request).
	MaxRequest = 2 << 20
	// maxServerRequest bounds what the server reads into memory for one
	// request; larger ones are refused with EINVAL.
	maxServerRequest = 32 << 20
	// maxOptionLen bounds an option's or an option reply's payload.
	maxOptionLen = 64 << 10

	exportInfoLen = 8 + 2 + 124
	requestLen    = 28
	replyLen      = 16
	chunkHdrLen   = 20
	optHeaderLen  = 16
	optReplyLen   = 20
)

// Errno values an NBD server puts in a simple reply.
const (
	EPERM     uint32 = 1
	EIO       uint32 = 5
	ENOMEM    uint32 = 12
	EINVAL    uint32 = 22
	ENOSPC    uint32 = 28
	EOVERFLOW uint32 = 75
	ENOTSUP   uint32 = 95
	ESHUTDOWN uint32 = 108
)

// ErrorReply is an error the server sent in answer to one request. The
// connection stays usable after it.
type ErrorReply struct {
	Errno  uint32
	Offset int64
	Length uint32
}

func (e *ErrorReply) Error() string {
	return fmt.Sprintf("nbd: the server refused the read of %d bytes at offset %d with %s",
		e.Length, e.Offset, errnoName(e.Errno))
}

func errnoName(n uint32) string {
	switch n {
	case EPERM:
		return "EPERM (not permitted)"
	case EIO:
		return "EIO (I/O error on the server's disk)"
	case ENOMEM:
		return "ENOMEM (server out of memory)"
	case EINVAL:
		return "EINVAL (invalid request)"
	case ENOSPC:
		return "ENOSPC (no space)"
	case EOVERFLOW:
		return "EOVERFLOW (request too large)"
	case ENOTSUP:
		return "ENOTSUP (not supported)"
	case ESHUTDOWN:
		return "ESHUTDOWN (server shutting down)"
	}
	return fmt.Sprintf("error %d", n)
}

// ErrProtocol marks a reply that breaks the protocol; the connection is
// unusable after it.
var ErrProtocol = errors.New("nbd: protocol violation")

// ErrDropConnection, wrapped in the error of a ServerExport's ReadAt, makes
// the server close the connection at once without a reply, as a connection
// dropped in the middle of a read.
var ErrDropConnection = errors.New("nbd: drop the connection")

// request is one transmission-phase request.
type request struct {
	flags  uint16
	typ    uint16
	handle uint64
	offset uint64
	length uint32
}

func (r request) marshal(b []byte) {
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], r.flags)
	binary.BigEndian.PutUint16(b[6:], r.typ)
	binary.BigEndian.PutUint64(b[8:], r.handle)
	binary.BigEndian.PutUint64(b[16:], r.offset)
	binary.BigEndian.PutUint32(b[24:], r.length)
}

func parseRequest(b []byte) (request, error) {
	if len(b) != requestLen {
		return request{}, fmt.Errorf("%w: request header of %d bytes", ErrProtocol, len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != magicRequest {
		return request{}, fmt.Errorf("%w: request magic %#x", ErrProtocol, m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		handle: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// simpleReply is the header of a simple reply.
type simpleReply struct {
	errno  uint32
	handle uint64
}

func (r simpleReply) marshal(b []byte) {
	binary.BigEndian.PutUint32(b[0:], magicReply)
	binary.BigEndian.PutUint32(b[4:], r.errno)
	binary.BigEndian.PutUint64(b[8:], r.handle)
}

// parseReply checks a simple reply header. Structured replies are a
// protocol error: the client never negotiates them.
func parseReply(b []byte) (simpleReply, error) {
	if len(b) != replyLen {
		return simpleReply{}, fmt.Errorf("%w: reply header of %d bytes", ErrProtocol, len(b))
	}
	switch m := binary.BigEndian.Uint32(b); m {
	case magicReply:
	case magicStructRep:
		return simpleReply{}, fmt.Errorf("%w: structured reply, which the client did not negotiate", ErrProtocol)
	default:
		return simpleReply{}, fmt.Errorf("%w: reply magic %#x", ErrProtocol, m)
	}
	return simpleReply{errno: binary.BigEndian.Uint32(b[4:]), handle: binary.BigEndian.Uint64(b[8:])}, nil
}

// optReply is the header of an option reply.
type optReply struct {
	option uint32
	typ    uint32
	length uint32
}

func parseOptReply(b []byte) (optReply, error) {
	if len(b) != optReplyLen {
		return optReply{}, fmt.Errorf("%w: option reply of %d bytes", ErrProtocol, len(b))
	}
	if m := binary.BigEndian.Uint64(b); m != magicOptReply {
		return optReply{}, fmt.Errorf("%w: option reply magic %#x", ErrProtocol, m)
	}
	r := optReply{
		option: binary.BigEndian.Uint32(b[8:]),
		typ:    binary.BigEndian.Uint32(b[12:]),
		length: binary.BigEndian.Uint32(b[16:]),
	}
	if r.length > maxOptionLen {
		return optReply{}, fmt.Errorf("%w: option reply of %d bytes (at most %d)", ErrProtocol, r.length, maxOptionLen)
	}
	return r, nil
}

func optReplyName(t uint32) string {
	switch t {
	case repAck:
		return "ACK"
	case repErrUnsup:
		return "NBD_REP_ERR_UNSUP (option not supported)"
	case repErrPolicy:
		return "NBD_REP_ERR_POLICY (refused by the server's policy)"
	case repErrInvalid:
		return "NBD_REP_ERR_INVALID (invalid option)"
	case repErrTLSReqd:
		return "NBD_REP_ERR_TLS_REQD (TLS required)"
	case repErrUnknown:
		return "NBD_REP_ERR_UNKNOWN (no such export)"
	}
	return fmt.Sprintf("reply type %#x", t)
}

// RedactName returns an export name fit for logs and errors: xapi's export
// names carry the session reference after '?' ("/<vdi-uuid>?session_id=..."),
// which is a secret, so everything from the '?' on is replaced, as is
// anything from an "OpaqueRef:" on in a name without '?'.
func RedactName(name string) string {
	if i := strings.IndexByte(name, '?'); i >= 0 {
		return name[:i] + "?<redacted>"
	}
	if i := strings.Index(name, "OpaqueRef:"); i >= 0 {
		return name[:i] + "<redacted>"
	}
	return name
}

// maxNameLen is the longest export name the protocol allows.
const maxNameLen = 4096

// validateExport checks what VDI.get_nbd_info reported before any dial.
func validateExport(e Export) error {
	switch {
	case e.Address == "":
		return fmt.Errorf("nbd: export %q has no address (check VDI.get_nbd_info)", RedactName(e.Name))
	case e.Port <= 0 || e.Port > 65535:
		return fmt.Errorf("nbd: export %q has port %d: want 1 to 65535 (check VDI.get_nbd_info)", RedactName(e.Name), e.Port)
	case len(e.Name) > maxNameLen:
		return fmt.Errorf("nbd: export name of %d bytes is longer than NBD allows (%d)", len(e.Name), maxNameLen)
	case !utf8.ValidString(e.Name) || strings.IndexByte(e.Name, 0) >= 0:
		return fmt.Errorf("nbd: export name %q is not valid UTF-8 without NUL bytes, as NBD requires", RedactName(e.Name))
	}
	return nil
}
