package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the full mode (Server.Full) with a byte-level client.

func startFull(t *testing.T) (*holeExport, Export) {
	t.Helper()
	exp := newHoleExport(testLayout, 51)
	_, e := fullServer(t, map[string]ServerExport{"disk0": exp, "disk1": &memExport{data: randomBytes(4096, 52)}}, nil)
	return exp, e
}

func TestFullListInfoGo(t *testing.T) {
	exp, e := startFull(t)
	c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	a := c.option(optList, nil)
	var names []string
	for _, x := range a[:len(a)-1] {
		if x.typ != repServer || int(binary.BigEndian.Uint32(x.data)) != len(x.data)-4 {
			t.Fatalf("LIST sent %+v", x)
		}
		names = append(names, string(x.data[4:]))
	}
	if strings.Join(names, ",") != "disk0,disk1" || a[len(a)-1].typ != repAck {
		t.Fatalf("LIST answered %q then %#x", names, a[len(a)-1].typ)
	}
	if a := c.option(optList, []byte("x")); a[0].typ != repErrInvalid {
		t.Errorf("LIST with data answered %#x, want ERR_INVALID", a[0].typ)
	}
	if a := c.option(optInfo, nameData("nope")); len(a) != 1 || a[0].typ != repErrUnknown || !strings.Contains(string(a[0].data), `"nope"`) {
		t.Errorf("INFO of an unknown export answered %+v, want ERR_UNKNOWN alone, naming it", a)
	}
	if a := c.option(optGo, nameData(testName(testUUID))); a[0].typ != repErrUnknown || strings.Contains(string(a[0].data), "OpaqueRef") {
		t.Errorf("GO of an unknown export with a session answered %q", a[0].data)
	}
	if a := c.option(optGo, []byte{0, 0, 0, 9, 'x'}); a[0].typ != repErrInvalid {
		t.Errorf("a malformed GO answered %#x, want ERR_INVALID", a[0].typ)
	}
	a = c.option(optInfo, nameData("disk0"))
	if len(a) != 3 || a[2].typ != repAck {
		t.Fatalf("INFO answered %+v", a)
	}
	bs := a[1].data
	if binary.BigEndian.Uint16(bs) != infoBlockSize || binary.BigEndian.Uint32(bs[2:]) != 1 ||
		binary.BigEndian.Uint32(bs[6:]) != 64<<10 || binary.BigEndian.Uint32(bs[10:]) != 32<<20 {
		t.Errorf("block size info %x, want min 1, preferred 64 KiB, max 32 MiB", bs)
	}
	if exp.closed.Load() != 1 {
		t.Errorf("INFO left the export open (%d closes)", exp.closed.Load())
	}
	size, flags := c.goExport("disk0")
	want := transHasFlags | transReadOnly | transSendFlush | transCanMultiConn | transSendCache
	if size != uint64(len(exp.data)) || flags != want {
		t.Fatalf("GO reported size %d flags %#x, want %d %#x (no DF without structured replies)", size, flags, len(exp.data), want)
	}
	// Simple replies, byte granular.
	c.request(request{typ: cmdRead, handle: 7, offset: 131071, length: 5})
	rep, data := c.simple(5)
	if rep.handle != 7 || rep.errno != 0 || !bytes.Equal(data, exp.data[131071:131076]) {
		t.Fatalf("an unaligned read answered %+v %x", rep, data)
	}
	c.request(request{typ: cmdWrite, handle: 8, length: 3})
	c.write([]byte("abc"))
	c.request(request{typ: cmdRead, handle: 9, flags: cmdFlagDF, length: 5})
	want8or9 := map[uint64]uint32{8: EPERM, 9: EINVAL} // in either order: requests run at once
	for range 2 {
		rep, _ := c.simple(0)
		if want, ok := want8or9[rep.handle]; !ok || rep.errno != want {
			t.Errorf("request %d answered %+v (WRITE wants EPERM, DF without structured replies EINVAL)", rep.handle, rep)
		}
		delete(want8or9, rep.handle)
	}
}

func TestFullExportNameNoZeroes(t *testing.T) {
	_, e := startFull(t)
	for _, cflags := range []uint32{clientFixedNewstyle | clientNoZeroes, clientFixedNewstyle} {
		c := dialFull(t, e, cflags)
		h := append(binary.BigEndian.AppendUint64(nil, magicOpt), 0, 0, 0, 1, 0, 0, 0, 5)
		c.write(append(h, "disk1"...))
		n := 10
		if cflags&clientNoZeroes == 0 {
			n = exportInfoLen
		}
		b := c.read(n)
		if binary.BigEndian.Uint64(b) != 4096 {
			t.Fatalf("EXPORT_NAME sent %x", b[:10])
		}
		c.request(request{typ: cmdRead, handle: 3, offset: 1, length: 2})
		if rep, _ := c.simple(2); rep.handle != 3 || rep.errno != 0 {
			t.Errorf("client flags %#x: the first reply after EXPORT_NAME is %+v: zeroes sent or missing", cflags, rep)
		}
	}
}

func TestFullStructuredReadAndBlockStatus(t *testing.T) {
	exp, e := startFull(t)
	c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	_, flags := c.goStructured("disk0")
	if flags&transSendDF == 0 {
		t.Errorf("flags %#x lack SEND_DF with structured replies", flags)
	}
	// Across the first hole, a data extent and into the second hole.
	off, n := uint64(100<<10), uint32(1<<20+100<<10)
	c.request(request{typ: cmdRead, handle: 1, offset: off, length: n})
	got, kinds := assemble(t, c.reply(), off, n)
	if !bytes.Equal(got, exp.data[off:off+uint64(n)]) || kinds != "hole,data,hole" {
		t.Fatalf("read %q: bytes equal %v", kinds, bytes.Equal(got, exp.data[off:off+uint64(n)]))
	}
	c.request(request{typ: cmdRead, handle: 2, flags: cmdFlagDF, offset: off, length: n})
	got, kinds = assemble(t, c.reply(), off, n)
	if !bytes.Equal(got, exp.data[off:off+uint64(n)]) || kinds != "data" {
		t.Fatalf("DF read came as %q", kinds)
	}
	c.request(request{typ: cmdBlockStatus, handle: 3, offset: 0, length: uint32(len(exp.data))})
	if got := descriptors(t, c.reply()); got != layoutString(testLayout) {
		t.Errorf("block status %s, want %s", got, layoutString(testLayout))
	}
	c.request(request{typ: cmdBlockStatus, handle: 4, flags: cmdFlagReqOne, offset: 128<<10 - 10, length: 1 << 30})
	if rep := c.reply(); errnoOf(rep) != EINVAL {
		t.Errorf("block status beyond the end answered %d, want EINVAL", errnoOf(rep))
	}
	c.request(request{typ: cmdBlockStatus, handle: 5, flags: cmdFlagReqOne, offset: 128<<10 - 10, length: 1 << 20})
	if got := descriptors(t, c.reply()); got != "10:3" {
		t.Errorf("block status with REQ_ONE %s, want one hole of 10 bytes", got)
	}
}

// assemble rebuilds a read's bytes from its chunks and names their kinds.
func assemble(t *testing.T, cs []chunk, off uint64, n uint32) ([]byte, string) {
	t.Helper()
	buf := bytes.Repeat([]byte{0xEE}, int(n))
	var kinds []string
	for _, c := range cs {
		if len(c.payload) < 8 {
			t.Fatalf("chunk %+v", c)
		}
		at := binary.BigEndian.Uint64(c.payload) - off
		switch c.typ {
		case replyOffsetData:
			copy(buf[at:], c.payload[8:])
			kinds = append(kinds, "data")
		case replyOffsetHole:
			clear(buf[at : at+uint64(binary.BigEndian.Uint32(c.payload[8:]))])
			kinds = append(kinds, "hole")
		default:
			t.Fatalf("a read answered a chunk of type %d", c.typ)
		}
	}
	return buf, strings.Join(kinds, ",")
}

// descriptors renders a block status reply as "length:state ...".
func descriptors(t *testing.T, cs []chunk) string {
	t.Helper()
	if len(cs) != 1 || cs[0].typ != replyBlockStat || binary.BigEndian.Uint32(cs[0].payload) != allocationID {
		t.Fatalf("block status answered %+v", cs)
	}
	var out []string
	for p := cs[0].payload[4:]; len(p) >= 8; p = p[8:] {
		out = append(out, itoa(binary.BigEndian.Uint32(p))+":"+itoa(binary.BigEndian.Uint32(p[4:])))
	}
	return strings.Join(out, " ")
}

func layoutString(layout []Extent) string {
	var out []string
	for _, e := range layout {
		state := uint32(0)
		if e.Hole {
			state = 3
		}
		out = append(out, itoa(uint32(e.Len))+":"+itoa(state))
	}
	return strings.Join(out, " ")
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestFullRefusals(t *testing.T) {
	exp, e := startFull(t)
	c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	c.goStructured("disk0")
	size := uint64(len(exp.data))
	cases := []struct {
		name  string
		req   request
		errno uint32
	}{
		{"write", request{typ: cmdWrite, length: 4}, EPERM},
		{"trim", request{typ: cmdTrim, length: 4096}, EPERM},
		{"write zeroes", request{typ: cmdWriteZeroes, length: 4096}, EPERM},
		{"read past the end", request{typ: cmdRead, offset: size - 1, length: 2}, EINVAL},
		{"read at a huge offset", request{typ: cmdRead, offset: 1 << 63, length: 2}, EINVAL},
		{"read of 0 bytes", request{typ: cmdRead, offset: 0, length: 0}, EINVAL},
		{"read over 32 MiB", request{typ: cmdRead, length: 32<<20 + 1}, EINVAL}, // beyond the small export too
		{"block status of 0 bytes", request{typ: cmdBlockStatus}, EINVAL},
		{"cache past the end", request{typ: cmdCache, offset: size, length: 1}, EINVAL},
		{"unknown command", request{typ: 42, length: 1}, EINVAL},
		{"unknown flag", request{typ: cmdRead, flags: 1 << 9, length: 1}, EINVAL},
		{"REQ_ONE on a read", request{typ: cmdRead, flags: cmdFlagReqOne, length: 1}, EINVAL},
		{"flush", request{typ: cmdFlush}, 0},
		{"cache", request{typ: cmdCache, offset: 0, length: 1 << 20}, 0},
		{"FUA read", request{typ: cmdRead, flags: cmdFlagFUA, offset: 1, length: 1}, 0},
	}
	for i, tc := range cases {
		tc.req.handle = uint64(100 + i)
		c.request(tc.req)
		if tc.req.typ == cmdWrite {
			c.write(make([]byte, tc.req.length))
		}
		rep := c.reply()
		if rep[0].handle != tc.req.handle || errnoOf(rep) != tc.errno {
			t.Errorf("%s: answered handle %d errno %d, want %d", tc.name, rep[0].handle, errnoOf(rep), tc.errno)
		}
		if tc.errno != 0 && (len(rep) != 1 || rep[0].typ != replyError || len(rep[0].payload) < 6) {
			t.Errorf("%s: error reply %+v, want one NBD_REPLY_TYPE_ERROR chunk", tc.name, rep)
		} else if tc.errno != 0 && !strings.Contains(string(rep[0].payload[6:]), " ") {
			t.Errorf("%s: error chunk has no message for the user: %q", tc.name, rep[0].payload[6:])
		}
	}
}

func TestFullOverflowAndNoContext(t *testing.T) {
	big := &memExport{data: make([]byte, 64<<20)}
	_, e := fullServer(t, map[string]ServerExport{"big": big, "other": &memExport{data: make([]byte, 512)}}, nil)
	c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	if a := c.option(optStructuredReply, nil); a[0].typ != repAck {
		t.Fatal(a)
	}
	// base:allocation selected for another export does not carry over.
	if a := c.option(optSetMetaContext, metaData("other", allocationContext)); len(a) != 2 {
		t.Fatalf("SET_META_CONTEXT answered %+v", a)
	}
	c.goExport("big")
	c.request(request{typ: cmdRead, handle: 1, length: 32<<20 + 1})
	if got := errnoOf(c.reply()); got != EOVERFLOW {
		t.Errorf("a read over 32 MiB answered %d, want EOVERFLOW", got)
	}
	c.request(request{typ: cmdRead, handle: 2, offset: 1, length: 32 << 20})
	if rep := c.reply(); errnoOf(rep) != 0 || len(rep[0].payload) != 8+32<<20 {
		t.Errorf("a read of 32 MiB failed: %d", errnoOf(rep))
	}
	c.request(request{typ: cmdBlockStatus, handle: 3, length: 4096})
	if got := errnoOf(c.reply()); got != EINVAL {
		t.Errorf("block status with the context selected for another export answered %d, want EINVAL", got)
	}
	// Without ExtentsExport everything is data.
	c2 := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	c2.goStructured("big")
	c2.request(request{typ: cmdBlockStatus, handle: 4, offset: 10, length: 64<<20 - 10})
	if got := descriptors(t, c2.reply()); got != itoa(64<<20-10)+":0" {
		t.Errorf("block status of an export without extents: %s", got)
	}
}

func TestFullMetaContextOptions(t *testing.T) {
	_, e := startFull(t)
	c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	if a := c.option(optSetMetaContext, metaData("disk0", allocationContext)); a[0].typ != repErrInvalid {
		t.Errorf("SET_META_CONTEXT before STRUCTURED_REPLY answered %#x, want ERR_INVALID", a[0].typ)
	}
	if a := c.option(optStructuredReply, []byte{1}); a[0].typ != repErrInvalid {
		t.Errorf("STRUCTURED_REPLY with data answered %#x, want ERR_INVALID", a[0].typ)
	}
	c.option(optStructuredReply, nil)
	for _, tc := range []struct {
		opt     uint32
		data    []byte
		replies string
	}{
		{optListMetaContext, metaData("disk0"), "0:base:allocation,ack"},
		{optListMetaContext, metaData("disk0", "base:"), "0:base:allocation,ack"},
		{optListMetaContext, metaData("disk0", "qemu:dirty-bitmap:x"), "ack"},
		{optSetMetaContext, metaData("disk0", "x-other:y", allocationContext), "1:base:allocation,ack"},
		{optSetMetaContext, metaData("disk0"), "ack"},
		{optSetMetaContext, metaData("disk0", "base:allocation")[:12], "invalid"},
		{optSetMetaContext, append(metaData("disk0", "base:allocation"), 0), "invalid"},
		{optListMetaContext, []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, "invalid"},
	} {
		var got []string
		for _, a := range c.option(tc.opt, tc.data) {
			switch a.typ {
			case repMetaContext:
				got = append(got, itoa(binary.BigEndian.Uint32(a.data))+":"+string(a.data[4:]))
			case repAck:
				got = append(got, "ack")
			case repErrInvalid:
				got = append(got, "invalid")
			default:
				got = append(got, "other")
			}
		}
		if strings.Join(got, ",") != tc.replies {
			t.Errorf("option %d %x answered %q, want %q", tc.opt, tc.data, got, tc.replies)
		}
	}
	c.goExport("disk0")
	c.request(request{typ: cmdBlockStatus, handle: 1, length: 4096})
	if got := errnoOf(c.reply()); got != EINVAL {
		t.Errorf("block status after an invalid SET_META_CONTEXT answered %d, want EINVAL", got)
	}
}

func TestFullExportFailures(t *testing.T) {
	exp := newHoleExport(testLayout, 61)
	exp.fail = func(n int64) error {
		switch n {
		case 1:
			return errors.New("chunk missing")
		case 3:
			return ErrDropConnection
		}
		return nil
	}
	bad := newHoleExport(testLayout, 62)
	bad.extentsErr = errors.New("index unreadable")
	m := map[string]ServerExport{"disk0": exp, "bad": bad}
	for name, exts := range map[string][]Extent{"zero": {{Len: 0}}, "negative": {{Len: 10}, {Len: -5}}, "none": {}} {
		x := newHoleExport([]Extent{{Len: 4096}}, 63)
		x.extentsFn = func(int64, int64) []Extent { return exts }
		m[name] = x
	}
	_, e := fullServer(t, m, nil)
	for _, name := range []string{"bad", "zero", "negative", "none"} {
		c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
		c.goStructured(name)
		for i, typ := range []uint16{cmdRead, cmdBlockStatus} {
			c.request(request{typ: typ, handle: uint64(i), length: 100})
			if got := errnoOf(c.reply()); got != EIO {
				t.Errorf("%s: request %d answered %d, want EIO", name, typ, got)
			}
		}
	}
	c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	c.goStructured("disk0")
	off := uint64(200 << 10) // in the first data extent
	c.request(request{typ: cmdRead, handle: 1, offset: off, length: 1000})
	rep := c.reply()
	if len(rep) != 1 || rep[0].typ != replyErrorOff || errnoOf(rep) != EIO ||
		binary.BigEndian.Uint64(rep[0].payload[len(rep[0].payload)-8:]) != off {
		t.Fatalf("a failed read answered %+v, want one ERROR_OFFSET chunk with EIO at %d", rep, off)
	}
	c.request(request{typ: cmdRead, handle: 2, offset: off, length: 1000})
	if rep := c.reply(); errnoOf(rep) != 0 || !bytes.Equal(rep[0].payload[8:], exp.data[off:off+1000]) {
		t.Fatal("the connection did not serve the read after a failed one")
	}
	c.request(request{typ: cmdRead, handle: 3, offset: off, length: 1000})
	if _, err := io.ReadFull(c.c, make([]byte, 1)); err == nil {
		t.Error("ErrDropConnection did not close the connection")
	}
}

// barrierExport holds every read until want reads wait at once.
type barrierExport struct {
	memExport
	want    int
	mu      sync.Mutex
	waiting int
	release chan struct{}
}

func (b *barrierExport) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	if b.waiting++; b.waiting == b.want {
		close(b.release)
	}
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-time.After(5 * time.Second):
		return 0, errors.New("the reads were not served at once")
	}
	return b.memExport.ReadAt(p, off)
}

func TestFullConcurrentRequests(t *testing.T) {
	exp := &barrierExport{memExport: memExport{data: randomBytes(1<<20, 71)}, want: 4, release: make(chan struct{})}
	_, e := fullServer(t, map[string]ServerExport{"disk0": exp}, nil)
	c := dialFull(t, e, clientFixedNewstyle|clientNoZeroes)
	c.goStructured("disk0")
	for i := range 4 {
		c.request(request{typ: cmdRead, handle: uint64(10 + i), offset: uint64(i) * 4096, length: 4096})
	}
	seen := map[uint64]bool{}
	for range 4 {
		rep := c.reply()
		h := rep[0].handle
		off := (h - 10) * 4096
		if errnoOf(rep) != 0 || seen[h] || !bytes.Equal(rep[0].payload[8:], exp.data[off:off+4096]) {
			t.Fatalf("request %d answered %d (or twice, or wrong bytes)", h, errnoOf(rep))
		}
		seen[h] = true
	}
	c.request(request{typ: cmdDisc})
	if _, err := io.ReadFull(c.c, make([]byte, 1)); err != io.EOF {
		t.Errorf("after DISC the server sent more or failed: %v", err)
	}
}

func TestFullAbortAndTLSRequired(t *testing.T) {
	_, e := startFull(t)
	c := dialFull(t, e, clientFixedNewstyle)
	if a := c.option(optAbort, nil); len(a) != 1 || a[0].typ != repAck {
		t.Errorf("ABORT answered %+v, want an ACK in full mode", a)
	}
	cert := newTestCert(t, "full.example")
	_, te := fullServer(t, map[string]ServerExport{"disk0": &memExport{data: make([]byte, 512)}}, cert.conf)
	tc := dialFull(t, te, clientFixedNewstyle)
	for _, opt := range []uint32{optGo, optInfo, optList, optStructuredReply, optSetMetaContext} {
		if a := tc.option(opt, nameData("disk0")); a[0].typ != repErrTLSReqd {
			t.Errorf("option %d before STARTTLS answered %#x, want TLS_REQD", opt, a[0].typ)
		}
	}
}

// The xapi-like default knows none of the full mode's options.
func TestDefaultModeRefusesFullOptions(t *testing.T) {
	_, e := exportServer(t, map[string]ServerExport{"x": &memExport{data: make([]byte, 512)}}, nil)
	c := rawClient(t, e)
	for _, opt := range []uint32{optGo, optInfo, optStructuredReply, optListMetaContext, optSetMetaContext} {
		if got := rawOption(t, c, opt); got != repErrUnsup {
			t.Errorf("the default server answered option %d with %#x, want ERR_UNSUP", opt, got)
		}
	}
	if got := rawOption(t, c, optList); got != repErrPolicy {
		t.Errorf("the default server answered LIST with %#x, want ERR_POLICY", got)
	}
}

// countingExport records the most reads it served at once.
type countingExport struct {
	memExport
	now, most atomic.Int64
}

func (c *countingExport) ReadAt(p []byte, off int64) (int, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	return c.memExport.ReadAt(p, off)
}

func TestFullMaxInFlight(t *testing.T) {
	exp := &countingExport{memExport: memExport{data: randomBytes(1<<20, 72)}}
	s := &Server{Full: true, MaxInFlight: 2, Logf: t.Logf,
		Open: func(context.Context, string) (ServerExport, error) { return exp, nil }}
	host, port := startServer(t, s)
	c := dialFull(t, Export{Address: host, Port: port}, clientFixedNewstyle|clientNoZeroes)
	c.goExport("any")
	for i := range 8 {
		c.request(request{typ: cmdRead, handle: uint64(i), offset: uint64(i) << 10, length: 1 << 10})
	}
	for range 8 {
		if rep, _ := c.simple(1 << 10); rep.errno != 0 {
			t.Fatalf("request %d failed: %d", rep.handle, rep.errno)
		}
	}
	if m := exp.most.Load(); m != 2 {
		t.Errorf("at most %d reads ran at once, want MaxInFlight = 2", m)
	}
}
