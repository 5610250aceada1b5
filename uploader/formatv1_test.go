package uploader_test

// The frozen format-v1 test vectors (testdata/format-v1, described in
// FORMAT.md "Test vectors"): a repository written once by this pipeline,
// with its passphrase and the images its snapshots restore to. Every test
// run opens it with the current code, restores every snapshot, checks every
// blob, and backs the images up again into a copy of it, so a change to any
// byte of the format, to the chunker or to the chunk IDs fails here. The
// vectors are made by `go test ./uploader -run TestFormatV1Generate
// -update-vectors`; that is a format change, and FORMAT.md must follow it.

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/check"
	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

var updateVectors = flag.Bool("update-vectors", false, "regenerate testdata/format-v1 (a format change: update FORMAT.md too)")

const vectorsDir = "../testdata/format-v1"

// vectorsTree is the SHA-256 of the frozen repository's listing (see
// treeHash). It changes only when the vectors are regenerated.
const vectorsTree = "a16206570e9b007db088d6dc9a4e35ab07d3ea12190f8004a73600292a8c967e"

// vectorSet is vectors.json: what each snapshot of the frozen repository
// restores to.
type vectorSet struct {
	Passphrase string           `json:"passphrase_file"`
	Repository string           `json:"repository"`
	Snapshots  []vectorSnapshot `json:"snapshots"`
}

type vectorSnapshot struct {
	ID    string       `json:"id"`
	Name  string       `json:"name"`
	Time  string       `json:"time"`
	Disks []vectorDisk `json:"disks"`
}

type vectorDisk struct {
	Size        int64    `json:"size"`
	Digest      string   `json:"digest"`
	Lists       []string `json:"lists"`
	Image       string   `json:"image"` // file under testdata/format-v1; "" for an empty disk
	ImageSHA256 string   `json:"image_sha256"`
}

// vectorImage is one night of one disk, built from deterministic inputs.
type vectorImage struct {
	name  string // snapshot name
	file  string // expected image file
	time  time.Time
	bytes []byte
	holes []int // blocks left as holes in the source file (they hold zeros)
}

// vectorImages builds the images the frozen repository holds: web01 over
// two nights (the second changes two blocks and inserts 1000 bytes), db01,
// and an empty disk. Block indexes are of 64 KiB blocks.
func vectorImages() []vectorImage {
	const bs = manifest.BlockSize
	rng := rand.New(rand.NewPCG(2026, 11))
	text := func(n int) []byte { return textBytes(rng, n) }
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	zeros := func(n int) []byte { return make([]byte, n) }
	// web01: text, a hole, a zero block written out, random bytes, text
	// with a zero block inside it, a hole, and text ending in a partial
	// block: 40 blocks and 1234 bytes. db01 is 9 blocks and 1 byte.
	web1 := slices.Concat(text(6*bs), zeros(4*bs), zeros(bs), random(4*bs),
		text(3*bs), zeros(bs), text(12*bs), zeros(5*bs), text(4*bs+1234))
	web2 := slices.Clone(web1)
	copy(web2[3*bs+5000:], random(4096))
	copy(web2[25*bs+100:], random(4096))
	at := 20*bs + 100
	web2 = slices.Concat(web2[:at], text(1000), web2[at:])
	db := slices.Concat(text(4*bs), zeros(bs), random(2*bs), text(2*bs+1))
	day := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	return []vectorImage{
		{name: "web01", file: "web01-night1.img.gz", time: day, bytes: web1, holes: []int{6, 7, 8, 9, 31, 32, 33, 34, 35}},
		{name: "web01", file: "web01-night2.img.gz", time: day.Add(24*time.Hour + 500*time.Millisecond), bytes: web2, holes: []int{6, 7, 8, 9}},
		{name: "db01", file: "db01.img", time: day.Add(24*time.Hour + 30*time.Minute + 123456789), bytes: db},
		{name: "blank", time: day.Add(48 * time.Hour)},
	}
}

// textBytes returns n bytes of log-like text.
func textBytes(rng *rand.Rand, n int) []byte {
	words := []string{"vault ", "tenant ", "backup ", "region ", "chunk ", "INFO ", "WARN ", "2026-11-01T01:00:00Z ", "disk ", "\n", "acme ", "web01 "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

// writeSource writes an image as a sparse file, leaving the given blocks as
// holes.
func writeSource(t *testing.T, path string, im vectorImage) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(im.bytes))); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(im.bytes); off += manifest.BlockSize {
		if slices.Contains(im.holes, off/manifest.BlockSize) {
			continue
		}
		if _, err := f.WriteAt(im.bytes[off:min(off+manifest.BlockSize, len(im.bytes))], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFormatV1Generate writes testdata/format-v1. It runs only with
// -update-vectors.
func TestFormatV1Generate(t *testing.T) {
	if !*updateVectors {
		t.Skip("regenerates the frozen vectors only with -update-vectors")
	}
	ctx := context.Background()
	// The other files are overwritten; .gitattributes stays.
	if err := os.RemoveAll(filepath.Join(vectorsDir, "repo")); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenLocal(filepath.Join(vectorsDir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	pass := "coffer format v1 test vectors"
	writeFile(t, "passphrase.txt", []byte(pass))
	cfg := repo.DefaultConfig()
	cfg.PackSize = 1 << 20 // the smallest allowed, not the default
	r, err := repo.Init(ctx, st, []byte(pass), cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "coffer-vectors")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	set := vectorSet{Passphrase: "passphrase.txt", Repository: "repo"}
	for _, im := range vectorImages() {
		path := filepath.Join(src, im.name+".img")
		writeSource(t, path, im)
		res, err := backupImage(t, r, path, uploader.Options{Name: im.name, Clock: clocktest.New(im.time), Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		d := res.Snapshot.Disks[0]
		vd := vectorDisk{Size: d.Size, Digest: d.Digest, Lists: d.Lists, Image: im.file, ImageSHA256: sha256Hex(im.bytes)}
		switch {
		case strings.HasSuffix(im.file, ".gz"):
			writeFile(t, im.file, gzipped(t, im.bytes))
		case im.file != "":
			writeFile(t, im.file, im.bytes)
		}
		set.Snapshots = append(set.Snapshots, vectorSnapshot{ID: res.SnapshotID, Name: im.name,
			Time: res.Snapshot.Time.Format(time.RFC3339Nano), Disks: []vectorDisk{vd}})
	}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, "vectors.json", append(b, '\n'))
	t.Logf("vectorsTree = %q", treeHash(t, filepath.Join(vectorsDir, "repo")))
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(vectorsDir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// treeHash is the SHA-256 of the sorted lines "<name> <hex SHA-256 of the
// file>\n" of every file below dir.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		lines = append(lines, filepath.ToSlash(rel)+" "+sha256Hex(b)+"\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return sha256Hex([]byte(strings.Join(lines, "")))
}

// copyTree copies the files below src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// loadVectors reads vectors.json and the passphrase, and opens a copy of
// the frozen repository with the current code, its index loaded.
func loadVectors(t *testing.T) (*vectorSet, *repo.Repo, string) {
	t.Helper()
	if *updateVectors {
		t.Skip("the vectors are being regenerated")
	}
	b, err := os.ReadFile(filepath.Join(vectorsDir, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var set vectorSet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if got := treeHash(t, filepath.Join(vectorsDir, set.Repository)); got != vectorsTree {
		t.Fatalf("the frozen repository changed (tree %s, want %s): the format-v1 vectors are never rewritten", got, vectorsTree)
	}
	pass, err := os.ReadFile(filepath.Join(vectorsDir, set.Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "repo")
	copyTree(t, filepath.Join(vectorsDir, set.Repository), dir)
	st, err := store.OpenLocal(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), st, pass)
	if err != nil {
		t.Fatalf("opening the frozen repository: %v", err)
	}
	if err := r.LoadIndex(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return &set, r, dir
}

// expectedImage returns the bytes a vector disk restores to.
func expectedImage(t *testing.T, d vectorDisk) []byte {
	t.Helper()
	if d.Image == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(vectorsDir, d.Image))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(d.Image, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	if int64(len(b)) != d.Size || sha256Hex(b) != d.ImageSHA256 {
		t.Fatalf("%s: %d bytes with SHA-256 %s, vectors.json says %d and %s", d.Image, len(b), sha256Hex(b), d.Size, d.ImageSHA256)
	}
	return b
}

// TestFormatV1Restore restores every snapshot of the frozen repository, with
// and without verification (which checks chunk IDs instead), and compares
// the output with the expected image.
func TestFormatV1Restore(t *testing.T) {
	ctx := context.Background()
	set, r, _ := loadVectors(t)
	all, err := r.Snapshots(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(set.Snapshots) {
		t.Fatalf("%d snapshots, vectors.json lists %d", len(all), len(set.Snapshots))
	}
	for i, vs := range set.Snapshots {
		s := all[i]
		if s.ID != vs.ID || s.Name != vs.Name || s.Time.Format(time.RFC3339Nano) != vs.Time || len(s.Disks) != len(vs.Disks) {
			t.Fatalf("snapshot %d is %s %q at %s with %d disks, want %s %q at %s with %d", i, s.ID, s.Name, s.Time.Format(time.RFC3339Nano), len(s.Disks), vs.ID, vs.Name, vs.Time, len(vs.Disks))
		}
		for di, vd := range vs.Disks {
			d := &s.Disks[di]
			if d.Size != vd.Size || d.Digest != vd.Digest || !slices.Equal(d.Lists, vd.Lists) {
				t.Fatalf("snapshot %s disk %d: size %d digest %s lists %v, want %d %s %v", s.ID, di, d.Size, d.Digest, d.Lists, vd.Size, vd.Digest, vd.Lists)
			}
			want := expectedImage(t, vd)
			for _, noVerify := range []bool{false, true} {
				out := filepath.Join(t.TempDir(), "out.img")
				res, err := restore.New(r, d, restore.Options{NoVerify: noVerify}).Run(ctx, out)
				if err != nil {
					t.Fatalf("restoring snapshot %s (%s) disk %d: %v", s.ID, s.Name, di, err)
				}
				if res.Verified == noVerify {
					t.Fatalf("snapshot %s: verified %v with NoVerify %v", s.ID, res.Verified, noVerify)
				}
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("snapshot %s (%s) disk %d restored to %d bytes with SHA-256 %s, want %d bytes %s", s.ID, s.Name, di, len(got), sha256Hex(got), len(want), sha256Hex(want))
				}
			}
		}
	}
}

// TestFormatV1Check runs the equivalent of check --read-data on the frozen
// repository: every object hashes to its name, every pack header matches
// the index, every blob opens and hashes to its ID.
func TestFormatV1Check(t *testing.T) {
	_, r, _ := loadVectors(t)
	rep, err := check.Run(context.Background(), r, check.Options{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("check --read-data found problems: %+v", rep.Problems)
	}
	got := fmt.Sprintf("keys %d index files %d packs %d blobs %d snapshots %d", rep.Keys, rep.IndexFiles, rep.Packs, rep.Blobs, rep.Snapshots)
	if want := "keys 1 index files 3 packs 6 blobs 24 snapshots 4"; got != want {
		t.Fatalf("check counted %s, want %s", got, want)
	}
}

// TestFormatV1Rewrite backs each expected image up again into a copy of the
// frozen repository: the current writer must cut the same chunks with the
// same IDs, write the same region maps and map lists (the same list IDs) and
// the same digest, and so store no new chunk.
func TestFormatV1Rewrite(t *testing.T) {
	set, r, _ := loadVectors(t)
	src := t.TempDir()
	for _, vs := range set.Snapshots {
		vd := vs.Disks[0]
		path := filepath.Join(src, vs.Name+".img")
		if err := os.WriteFile(path, expectedImage(t, vd), 0o600); err != nil {
			t.Fatal(err)
		}
		if vd.Size == 0 {
			// Readers must restore an empty disk, but today's writer
			// refuses to back up a 0-byte source (it is nearly always a
			// mistake: a detached disk, /dev/null).
			if src, err := source.OpenImage(path); err == nil {
				src.Close()
				t.Fatalf("%s: a 0-byte image was accepted for backup", vs.Name)
			}
			continue
		}
		res, err := backupImage(t, r, path, uploader.Options{Name: vs.Name})
		if err != nil {
			t.Fatal(err)
		}
		d := res.Snapshot.Disks[0]
		if d.Digest != vd.Digest || !slices.Equal(d.Lists, vd.Lists) || res.NewChunks != 0 || res.Packs != 0 {
			t.Fatalf("backing %s up again: digest %s lists %v, %d new chunks in %d packs; want %s %v and nothing new",
				vs.Name, d.Digest, d.Lists, res.NewChunks, res.Packs, vd.Digest, vd.Lists)
		}
	}
}

// TestFormatV1Documented: FORMAT.md's "Test vectors" names every snapshot
// of the frozen repository with its digest and expected image, so the page
// and the vectors cannot drift apart.
func TestFormatV1Documented(t *testing.T) {
	set, _, _ := loadVectors(t)
	doc, err := os.ReadFile("../FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Test vectors\n")
	if !ok {
		t.Fatal(`FORMAT.md has no "Test vectors" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	want := []string{vecKEK, vecM, vecKData, vecKID, vecKCfg, vecKPol, vecPol}
	for _, s := range set.Snapshots {
		want = append(want, s.ID, s.Time)
		for _, d := range s.Disks {
			want = append(want, d.Digest, d.ImageSHA256, fmt.Sprint(d.Size))
		}
	}
	for _, w := range want {
		if !strings.Contains(section, w) {
			t.Errorf("FORMAT.md's Test vectors section does not mention %s", w)
		}
	}
}
