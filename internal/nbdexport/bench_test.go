package nbdexport

import (
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskread"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// BenchmarkInstantAccess serves a 16 GiB disk holding 256 MiB of data from
// a local repository and measures, with a cold cache each time, what a
// client waits for its first byte of data (from connecting, so the export
// is opened then) and how fast it then reads the data in order
// (first-byte-ms, MB/s of data). make bench reports both.
func BenchmarkInstantAccess(b *testing.B) {
	repofixture.UseInsecureKDF()
	const size, piece, pieces = 16 << 30, 4 << 20, 64
	f := repofixture.New(b, "instant access bench passphrase")
	rng := rand.New(rand.NewPCG(1, 2))
	im := &repofixture.Image{Size: size}
	for i := range pieces {
		off := int64(i) * (size / pieces) / manifest.BlockSize * manifest.BlockSize
		im.Pieces = append(im.Pieces, repofixture.Piece{Off: off, Data: repofixture.RandBytes(rng, piece)})
	}
	snap := f.Snapshot("vm", f.Disk(0, im, nil))
	r := f.Reopen()
	buf := make([]byte, 1<<20)
	var firstByte, read time.Duration
	b.ResetTimer()
	for range b.N {
		ex, err := Open(context.Background(), r, snap.Snapshot, diskread.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var s nbd.Server
		ex.Serve(&s)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go s.Serve(l)
		start := time.Now()
		c, err := nbd.Dial(context.Background(), nbd.Export{Address: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, Name: "xvda"}, nbd.DialOptions{AllowPlain: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.ReadAt(buf[:4096], im.Pieces[len(im.Pieces)/2].Off); err != nil {
			b.Fatal(err)
		}
		firstByte += time.Since(start)
		start = time.Now()
		for _, p := range im.Pieces {
			for off := p.Off; off < p.Off+piece; off += int64(len(buf)) {
				if _, err := c.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
		}
		read += time.Since(start)
		c.Close()
		s.Close()
		ex.Close()
	}
	b.ReportMetric(float64(firstByte.Milliseconds())/float64(b.N), "first-byte-ms")
	b.ReportMetric(float64(pieces*piece)*float64(b.N)/read.Seconds()/1e6, "MB/s")
}
