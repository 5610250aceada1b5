package nbdexport

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/diskread"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/internal/testutil/judge"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

func init() { repofixture.UseInsecureKDF() }

// A snapshot's disks served over NBD: qemu-img reads each equal to the
// disk, nbdinfo lists them and maps the holes, nbdcopy copies them.
func TestServeSnapshot(t *testing.T) {
	qemu, nbdinfo, nbdcopy := judge.Need(t, "qemu-img"), judge.Need(t, "nbdinfo"), judge.Need(t, "nbdcopy")
	f := repofixture.New(t, "nbd export test passphrase")
	im := repofixture.SampleImage()
	small := &repofixture.Image{Size: 3*manifest.BlockSize + 100, Pieces: []repofixture.Piece{{Off: manifest.BlockSize, Data: []byte("hello")}}}
	d0, d1 := f.Disk(0, im, nil), f.Disk(1, small, nil)
	d1.Name = "xvdb"
	snap := f.Snapshot("vm", d0, d1)
	r := f.Reopen()
	ex, err := Open(context.Background(), r, snap.Snapshot, diskread.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	var s nbd.Server
	ex.Serve(&s)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	base := "nbd://" + l.Addr().String() + "/"

	dir := t.TempDir()
	for name, img := range map[string]*repofixture.Image{"xvda": im, "xvdb": small} {
		raw := filepath.Join(dir, name+".raw")
		if err := os.WriteFile(raw, img.Read(0, img.Size), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := judge.Run(t, qemu, "compare", "-f", "raw", "-F", "raw", raw, base+name); !strings.Contains(out, "identical") {
			t.Fatalf("%s: qemu-img compare: %s", name, out)
		}
		copied := filepath.Join(dir, name+".copy")
		judge.Run(t, nbdcopy, base+name, copied)
		if got, _ := os.ReadFile(copied); string(got) != string(img.Read(0, img.Size)) {
			t.Fatalf("%s: nbdcopy's copy differs", name)
		}
	}
	// The map shows the holes: every extent nbdinfo calls data touches a
	// piece, and every hole is zero.
	for _, line := range strings.Split(strings.TrimSpace(judge.Run(t, nbdinfo, "--map", base+"xvdb")), "\n") {
		var off, n, state int64
		if _, err := fmt.Sscan(line, &off, &n, &state); err != nil {
			t.Fatalf("nbdinfo --map line %q: %v", line, err)
		}
		if data := state&1 == 0; data != small.HasData(off, n) {
			t.Errorf("nbdinfo --map: %q, but the disk has data there: %v", line, small.HasData(off, n))
		}
	}
	list := judge.Run(t, nbdinfo, "--list", base)
	for _, name := range []string{"xvda", "xvdb"} {
		if !strings.Contains(list, name) {
			t.Errorf("nbdinfo --list lacks %s:\n%s", name, list)
		}
	}
	if _, err := s.Open(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), "xvda") {
		t.Errorf("an unknown export: %v", err)
	}
}
