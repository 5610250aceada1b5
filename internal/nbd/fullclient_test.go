package nbd

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// fullClient speaks the protocol byte by byte, so tests can send what a
// well-behaved client would not and read exactly what the server answers.
type fullClient struct {
	t testing.TB
	c net.Conn
}

// dialFull connects, checks the greeting and sends the client flags.
func dialFull(t testing.TB, e Export, cflags uint32) *fullClient {
	t.Helper()
	c, err := net.Dial("tcp", addr(e))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(clock.Real.Now().Add(10 * time.Second))
	r := &fullClient{t: t, c: c}
	g := r.read(18)
	if binary.BigEndian.Uint64(g) != magicNBD || binary.BigEndian.Uint64(g[8:]) != magicOpt {
		t.Fatalf("greeting %x", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("full mode greets with flags %#x, want FIXED_NEWSTYLE|NO_ZEROES", f)
	}
	r.write(binary.BigEndian.AppendUint32(nil, cflags))
	return r
}

func (r *fullClient) read(n int) []byte {
	r.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r.c, b); err != nil {
		r.t.Fatalf("reading %d bytes from the server: %v", n, err)
	}
	return b
}

func (r *fullClient) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("writing to the server: %v", err)
	}
}

// optAnswer is one option reply.
type optAnswer struct {
	typ  uint32
	data []byte
}

// option sends an option and returns its replies up to the final one (an
// ACK or an error).
func (r *fullClient) option(opt uint32, data []byte) []optAnswer {
	r.t.Helper()
	h := binary.BigEndian.AppendUint64(nil, magicOpt)
	h = binary.BigEndian.AppendUint32(h, opt)
	h = binary.BigEndian.AppendUint32(h, uint32(len(data)))
	r.write(append(h, data...))
	var out []optAnswer
	for {
		rep, err := parseOptReply(r.read(optReplyLen))
		if err != nil || rep.option != opt {
			r.t.Fatalf("option %d answered %+v, %v", opt, rep, err)
		}
		out = append(out, optAnswer{rep.typ, r.read(int(rep.length))})
		if rep.typ == repAck || rep.typ&repErrBit != 0 {
			return out
		}
	}
}

// nameData is the data of INFO and GO for name, with no info requests.
func nameData(name string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint16(b, 0)
}

// metaData is the data of the meta-context options.
func metaData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// goStructured negotiates structured replies, base:allocation for name and
// enters transmission with NBD_OPT_GO; it returns the export's size and
// flags.
func (r *fullClient) goStructured(name string) (uint64, uint16) {
	r.t.Helper()
	if a := r.option(optStructuredReply, nil); len(a) != 1 || a[0].typ != repAck {
		r.t.Fatalf("STRUCTURED_REPLY answered %+v", a)
	}
	if a := r.option(optSetMetaContext, metaData(name, allocationContext)); len(a) != 2 || a[0].typ != repMetaContext {
		r.t.Fatalf("SET_META_CONTEXT answered %+v", a)
	}
	return r.goExport(name)
}

// goExport sends NBD_OPT_GO and returns the size and flags it reported.
func (r *fullClient) goExport(name string) (uint64, uint16) {
	r.t.Helper()
	a := r.option(optGo, nameData(name))
	if a[len(a)-1].typ != repAck {
		r.t.Fatalf("GO %q answered %+v", name, a)
	}
	for _, x := range a {
		if x.typ == repInfo && binary.BigEndian.Uint16(x.data) == infoExport {
			return binary.BigEndian.Uint64(x.data[2:]), binary.BigEndian.Uint16(x.data[10:])
		}
	}
	r.t.Fatalf("GO %q sent no NBD_INFO_EXPORT: %+v", name, a)
	return 0, 0
}

func (r *fullClient) request(req request) {
	r.t.Helper()
	b := make([]byte, requestLen)
	req.marshal(b)
	r.write(b)
}

// chunk is one structured reply chunk.
type chunk struct {
	flags, typ uint16
	handle     uint64
	payload    []byte
}

// reply reads the chunks of one structured reply, up to the one flagged
// done.
func (r *fullClient) reply() []chunk {
	r.t.Helper()
	var out []chunk
	for {
		h := r.read(chunkHdrLen)
		if m := binary.BigEndian.Uint32(h); m != magicStructRep {
			r.t.Fatalf("reply magic %#x, want a structured reply", m)
		}
		c := chunk{flags: binary.BigEndian.Uint16(h[4:]), typ: binary.BigEndian.Uint16(h[6:]),
			handle: binary.BigEndian.Uint64(h[8:])}
		c.payload = r.read(int(binary.BigEndian.Uint32(h[16:])))
		out = append(out, c)
		if c.flags&replyFlagDone != 0 {
			return out
		}
	}
}

// errnoOf is the error of a reply's error chunk, 0 when it has none.
func errnoOf(cs []chunk) uint32 {
	for _, c := range cs {
		if c.typ&(1<<15) != 0 {
			return binary.BigEndian.Uint32(c.payload)
		}
	}
	return 0
}

// simple reads a simple reply header and n bytes of data when it succeeded.
func (r *fullClient) simple(n int) (simpleReply, []byte) {
	r.t.Helper()
	rep, err := parseReply(r.read(replyLen))
	if err != nil {
		r.t.Fatal(err)
	}
	if rep.errno != 0 {
		return rep, nil
	}
	return rep, r.read(n)
}
