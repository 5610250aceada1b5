package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/store"
)

// plantJunk stores n random bytes under prefix + their SHA-256, as anyone
// with an agent credential can through a vault (which checks only that the
// name is the bytes' hash), and returns the name.
func plantJunk(t *testing.T, st store.Store, prefix string, n int, seed uint64) string {
	t.Helper()
	b := make([]byte, n)
	rnd := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	sum := sha256.Sum256(b)
	name := prefix + hex.EncodeToString(sum[:])
	if prefix == DataPrefix {
		name = PackName(sum)
	}
	if err := st.Put(ctx, name, bytes.NewReader(b), int64(n)); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestJunkSnapshotIsSkippedByLatest(t *testing.T) {
	r, _, dir := initRepo(t)
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := r.SaveSnapshot(ctx, testSnapshot("web01", time.Unix(int64(1000+i), 0).UTC()))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	junk := plantJunk(t, r.Store(), SnapshotsPrefix, 500, 1)
	badName := SnapshotsPrefix + "not-a-hash"
	if err := r.Store().Put(ctx, badName, bytes.NewReader([]byte("{}")), 2); err != nil {
		t.Fatal(err)
	}
	warned := map[string]error{}
	s, err := r.FindSnapshotWarn(ctx, "latest", "web01", func(id string, err error) { warned[SnapshotsPrefix+id] = err })
	if err != nil || s.ID != ids[2] {
		t.Fatalf("latest with junk snapshots = %v, %v; want %s", s, err, ids[2])
	}
	for _, n := range []string{junk, badName} {
		var fe *ForeignError
		if err := warned[n]; !errors.As(err, &fe) || fe.Name != n || !strings.Contains(err.Error(), "ignored") {
			t.Errorf("warning for %s = %v; want a ForeignError naming it", n, err)
		}
	}
	if len(warned) != 2 {
		t.Errorf("warned about %d objects, want 2: %v", len(warned), warned)
	}
	if s, err := r.FindSnapshot(ctx, "latest", ""); err != nil || s.ID != ids[2] {
		t.Fatalf("FindSnapshot latest without warn = %v, %v", s, err)
	}
	// A damaged snapshot is not junk: its error says damaged, not foreign;
	// latest skips it too, and says so.
	flipByte(t, dir, SnapshotsPrefix+ids[2], 30, 1)
	warned = map[string]error{}
	s, err = r.FindSnapshotWarn(ctx, "latest", "web01", func(id string, err error) { warned[SnapshotsPrefix+id] = err })
	if err != nil || s.ID != ids[1] {
		t.Fatalf("latest with the newest damaged = %v, %v; want %s", s, err, ids[1])
	}
	if err := warned[SnapshotsPrefix+ids[2]]; err == nil || IsForeign(err) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged snapshot reported as %v; want damage, not foreign", err)
	}
}

func TestJunkIndexIsForeignDamagedIsNot(t *testing.T) {
	r, st, dir := initRepo(t)
	id, _, entries := writePack(t, r, someBlobs(3, 1000))
	good, err := r.SaveIndexFile(ctx, &index.File{Packs: []index.PackBlobs{{Pack: id, Blobs: entries}}})
	if err != nil {
		t.Fatal(err)
	}
	id2, _, entries2 := writePack(t, r, someBlobs(2, 3000))
	damaged, err := r.SaveIndexFile(ctx, &index.File{Packs: []index.PackBlobs{{Pack: id2, Blobs: entries2}}})
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, dir, damaged, 40, 1)
	junk := plantJunk(t, st, IndexPrefix, 500, 2)
	o, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]error{}
	if err := o.LoadIndex(ctx, func(name string, err error) { got[name] = err }); err != nil {
		t.Fatal(err)
	}
	if !IsForeign(got[junk]) || !strings.Contains(got[junk].Error(), junk) {
		t.Errorf("junk index reported as %v; want foreign, naming it", got[junk])
	}
	if err := got[damaged]; err == nil || IsForeign(err) {
		t.Errorf("damaged index reported as %v; want damage", err)
	}
	if _, ok := got[good]; ok || !o.Index.Has(entries[0].ID) {
		t.Errorf("the intact index %s was not loaded", good)
	}
	want := []string{damaged, junk}
	slices.Sort(want)
	if !slices.Equal(o.SkippedIndexFiles(), want) {
		t.Errorf("SkippedIndexFiles = %v, want %v", o.SkippedIndexFiles(), want)
	}
}

func TestClassifyPackError(t *testing.T) {
	r, st, dir := initRepo(t)
	// Junk that is not even shaped like a pack, and junk with a pack's
	// trailer around a header sealed with another key.
	shapeless := plantJunk(t, st, DataPrefix, 500, 3)
	other, _, _ := initRepo(t)
	oid, osize, _ := writePack(t, other, someBlobs(2, 500))
	foreignPack, err := store.ReadAll(ctx, other.Store(), PackName(oid))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SavePack(ctx, oid, foreignPack); err != nil {
		t.Fatal(err)
	}
	// A pack of this repository, damaged in its header.
	did, dsize, _ := writePack(t, r, someBlobs(3, 800))
	flipByte(t, dir, PackName(did), -pack.TrailerSize-5, 1)

	for _, c := range []struct {
		name    string
		id      pack.ID
		size    int64
		foreign bool
	}{
		{shapeless, mustParsePack(t, shapeless), 500, true},
		{PackName(oid), oid, osize, true},
		{PackName(did), did, dsize, false},
	} {
		_, err := r.ReadPackHeader(ctx, c.id, c.size)
		if err == nil {
			t.Fatalf("%s: header read without error", c.name)
		}
		err = r.ClassifyPackError(ctx, c.id, err)
		if IsForeign(err) != c.foreign {
			t.Errorf("%s: classified as %v; foreign %v", c.name, err, c.foreign)
		}
		if !c.foreign && !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: %v; want it to say the pack is damaged", c.name, err)
		}
		if !strings.Contains(err.Error(), c.name) {
			t.Errorf("error %q does not name %s", err, c.name)
		}
	}
	// A store error is not classified as anything.
	missing := pack.ID{1}
	err = r.ClassifyPackError(ctx, missing, errors.New("boom"))
	if err.Error() != "boom" {
		t.Errorf("an unrelated error became %v", err)
	}
}

func mustParsePack(t *testing.T, name string) pack.ID {
	t.Helper()
	id, err := ParsePackName(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestJunkSharingAPrefixIsNotAmbiguous: junk whose name was ground to
// share an ID prefix with a real snapshot does not make that prefix
// ambiguous (objects that are not junk still do: see
// TestFindSnapshotAmbiguousAndDamaged).
func TestJunkSharingAPrefixIsNotAmbiguous(t *testing.T) {
	r, st, _ := initRepo(t)
	id, err := r.SaveSnapshot(ctx, testSnapshot("web01", time.Unix(1000, 0).UTC()))
	if err != nil {
		t.Fatal(err)
	}
	prefix := id[:4]
	var body []byte
	for i := 0; ; i++ {
		body = []byte(fmt.Sprintf("junk %d", i))
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:])[:4] == prefix {
			break
		}
	}
	sum := sha256.Sum256(body)
	if err := st.Put(ctx, SnapshotsPrefix+hex.EncodeToString(sum[:]), bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	s, err := r.FindSnapshot(ctx, prefix, "")
	if err != nil || s.ID != id {
		t.Fatalf("FindSnapshot(%s) with junk sharing the prefix = %v, %v; want %s", prefix, s, err, id)
	}
}
