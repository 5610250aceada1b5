package source_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/uploader/source"
)

// memExport is an NBD export of bytes in memory that counts its reads.
type memExport struct {
	data  []byte
	reads *atomic.Int64
}

func (m *memExport) Size() int64 { return int64(len(m.data)) }
func (m *memExport) ReadAt(p []byte, off int64) (int, error) {
	m.reads.Add(1)
	return bytes.NewReader(m.data).ReadAt(p, off)
}
func (m *memExport) Close() error { return nil }

// serve runs a plain NBD server of data on loopback.
func serve(t *testing.T, data []byte, reads *atomic.Int64) nbd.Export {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &nbd.Server{Open: func(context.Context, string) (nbd.ServerExport, error) {
		return &memExport{data: data, reads: reads}, nil
	}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	addr := l.Addr().(*net.TCPAddr)
	return nbd.Export{Address: addr.IP.String(), Port: addr.Port, Name: "/disk"}
}

// A VDI read over NBD gives its bytes; a server that says the disk has
// another size than XenServer does is refused, naming both sizes.
func TestOpenNBD(t *testing.T) {
	data := bytes.Repeat([]byte("coffer nbd source"), 1<<16)[:1<<20]
	exp := serve(t, data, &atomic.Int64{})
	dial := exp.Dialer(nbd.DialOptions{AllowPlain: true})
	src, err := source.OpenNBD(context.Background(), "VM web disk 0", int64(len(data)), dial, nbd.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 64<<10)
	if _, err := src.ReadAt(got, 128<<10); err != nil || !bytes.Equal(got, data[128<<10:192<<10]) {
		t.Fatalf("read %v, bytes equal %v", err, bytes.Equal(got, data[128<<10:192<<10]))
	}
	if r, _ := src.DataRanges(0, src.Size()); len(r) != 1 || r[0] != [2]int64{0, src.Size()} {
		t.Fatalf("data ranges %v", r)
	}
	src.Close()

	_, err = source.OpenNBD(context.Background(), "VM web disk 0", int64(len(data))+4096, dial, nbd.ReaderOptions{})
	var se *source.SourceError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "1048576") || !strings.Contains(err.Error(), "1052672") {
		t.Fatalf("a server that disagrees about the size: %v; want a SourceError naming both sizes", err)
	}
}

// With read-ahead, small reads (a full read checking blocks for zeros) are
// served from the aligned MiB around them, fetched once, up to the disk's
// unaligned end; without it, each read is a request.
func TestNBDReadAhead(t *testing.T) {
	size := 3<<20 + 12288 // sectors, as every VDI
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	for _, ahead := range []bool{true, false} {
		var reads atomic.Int64
		exp := serve(t, data, &reads)
		src, err := source.OpenNBD(context.Background(), "disk", int64(size), exp.Dialer(nbd.DialOptions{AllowPlain: true}), nbd.ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		src.SetReadAhead(ahead)
		reads.Store(0)
		blk := make([]byte, 64<<10)
		for off := int64(0); off < int64(size); off += int64(len(blk)) {
			p := blk[:min(int64(len(blk)), int64(size)-off)]
			if n, err := src.ReadAt(p, off); err != nil || n != len(p) || !bytes.Equal(p, data[off:off+int64(len(p))]) {
				t.Fatalf("read-ahead %v: read at %d: %d, %v, equal %v", ahead, off, n, err, bytes.Equal(p, data[off:off+int64(len(p))]))
			}
		}
		small := reads.Load()
		// A large read starting in a span fetched already reads only the
		// rest.
		reads.Store(0)
		big := make([]byte, 960<<10)
		if n, err := src.ReadAt(big, 1<<20+64<<10); err != nil || n != len(big) || !bytes.Equal(big, data[1<<20+64<<10:2<<20]) {
			t.Fatalf("read-ahead %v: large read: %d, %v", ahead, n, err)
		}
		if want := map[bool]int64{true: 0, false: 1}[ahead]; reads.Load() != want {
			t.Errorf("read-ahead %v: the large read made %d requests beyond the spans held, want %d", ahead, reads.Load(), want)
		}
		src.Close()
		want := int64(4) // one per MiB
		if !ahead {
			want = int64((size + len(blk) - 1) / len(blk))
		}
		if got := small; got != want {
			t.Errorf("read-ahead %v: %d requests for %d bytes, want %d", ahead, got, size, want)
		}
	}
}
