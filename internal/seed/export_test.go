package seed

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// The seed's ID is drawn once and kept: every run of an export sees the
// same; a damaged ID file is an error naming it, not a new seed.
func TestExportID(t *testing.T) {
	root := filepath.Join(t.TempDir(), RootDir)
	id, err := ExportID(root)
	if err != nil || !isHex64(id) {
		t.Fatalf("ExportID = %q, %v", id, err)
	}
	again, err := ExportID(root)
	if err != nil || again != id {
		t.Fatalf("second ExportID = %q, %v; want %q", again, err, id)
	}
	if err := os.WriteFile(filepath.Join(StatePath(root), idFile), []byte("not an id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportID(root); err == nil || !strings.Contains(err.Error(), "seed-id") {
		t.Fatalf("a damaged ID file: %v", err)
	}
	if _, done, err := BackedUp(root); done || err != nil {
		t.Fatalf("BackedUp before the mark: %v %v", done, err)
	}
	snaps := []string{strings.Repeat("ab", 32)}
	if err := MarkBackedUp(root, snaps); err != nil {
		t.Fatal(err)
	}
	if got, done, err := BackedUp(root); !done || err != nil || !slices.Equal(got, snaps) {
		t.Fatalf("BackedUp = %v %v %v", got, done, err)
	}
}

// A repository's config ID (32 hex digits) names the repository of a
// manifest.
func TestManifestRepositoryID(t *testing.T) {
	m := testManifest(testKey(t))
	m.Repository = strings.Repeat("c", 32)
	b, _ := m.Marshal()
	if _, err := Parse(b); err != nil {
		t.Fatalf("a 32-digit repository ID: %v", err)
	}
	m.Repository = strings.Repeat("c", 31)
	b, _ = m.Marshal()
	if _, err := Parse(b); err == nil {
		t.Fatal("a 31-digit repository ID was accepted")
	}
}

// recordingStore records the puts it takes and the metadata they carry.
type recordingStore struct {
	store.Store
	puts []string
	meta map[string]store.ObjectMeta
}

func (r *recordingStore) Put(ctx context.Context, name string, rd io.ReaderAt, size int64) error {
	r.puts = append(r.puts, name)
	return r.Store.Put(ctx, name, rd, size)
}

func (r *recordingStore) PutMeta(ctx context.Context, name string, rd io.ReaderAt, size int64, m store.ObjectMeta) error {
	r.meta[name] = m
	return r.Put(ctx, name, rd, size)
}

// SendSmall sends index files, then receipts, then snapshots (never
// packs), a snapshot with the sizes of its receipt; run again it sends
// nothing and counts them present.
func TestSendSmall(t *testing.T) {
	k := testKey(t)
	root := filepath.Join(t.TempDir(), RootDir)
	write := func(name string, b []byte) {
		p := filepath.Join(root, ObjectsDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	packBody, metaBody, snapBody := []byte("pack bytes"), []byte("metadata pack bytes"), []byte("sealed snapshot")
	pack, metaPack, snap := sum(packBody), sum(metaBody), sum(snapBody)
	write("data/"+pack[:2]+"/"+pack, packBody)
	write("data/"+metaPack[:2]+"/"+metaPack, metaBody)
	write("index/"+sum([]byte("idx")), []byte("idx"))
	write("snapshots/"+snap, snapBody)
	rc := &vaultapi.Receipt{Version: vaultapi.ReceiptVersion, Snapshot: snap, Name: "web", Time: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC),
		Source: "image", Disks: []vaultapi.ReceiptDisk{{Size: 1000, DataBytes: 600}}, Packs: []string{pack}, Seed: strings.Repeat("5e", 32)}
	rb, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write("receipts/"+sum(rb), rb)
	m := &Manifest{Format: Format, ID: strings.Repeat("5e", 32), Tenant: strings.Repeat("2", 24), Repository: strings.Repeat("c", 32),
		Created: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), Signer: k.Public()}
	if err := Finish(t.Context(), root, m, k, FinishOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	local, err := store.OpenLocal(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	dst := &recordingStore{Store: local, meta: map[string]store.ObjectMeta{}}
	metaPacks := map[string]bool{metaPack: true}
	rep, err := s.SendSmall(t.Context(), dst, metaPacks)
	if err != nil || rep.Sent != 4 || rep.Present != 0 {
		t.Fatalf("SendSmall = %+v, %v; want 4 sent", rep, err)
	}
	want := []string{"data/" + metaPack[:2] + "/" + metaPack, "index/" + sum([]byte("idx")), "receipts/" + sum(rb), "snapshots/" + snap}
	if !slices.Equal(dst.puts, want) {
		t.Fatalf("sent %q; want %q in that order, the metadata pack but no data pack", dst.puts, want)
	}
	if got := dst.meta["snapshots/"+snap]; got != (store.ObjectMeta{LogicalBytes: 1000, DataBytes: 600}) {
		t.Fatalf("snapshot sent with %+v; want its receipt's sizes", got)
	}
	if len(dst.meta) != 1 {
		t.Fatalf("metadata sent with %d objects; want only the snapshot", len(dst.meta))
	}
	dst.puts = nil
	rep, err = s.SendSmall(t.Context(), dst, metaPacks)
	if err != nil || rep.Sent != 0 || rep.Present != 4 {
		t.Fatalf("second SendSmall = %+v, %v; want 4 present", rep, err)
	}
}
