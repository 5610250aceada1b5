package diskgen

import (
	"bytes"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
)

const testSize = 64 << 20

// allocated returns the bytes the file system allocated for path.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func zstdRatio(t *testing.T, p []byte) float64 {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return float64(len(p)) / float64(len(enc.EncodeAll(p, nil)))
}

// classify guesses a region's kind from its bytes.
func classify(t *testing.T, p []byte) Kind {
	t.Helper()
	if isZero(p) {
		return Zero
	}
	for _, c := range p {
		if c != ' ' && c != '\n' && (c < 'a' || c > 'z') {
			return Random
		}
	}
	return Text
}

func TestGenerateDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for _, p := range []struct {
		path string
		seed uint64
	}{{a, 1}, {b, 1}, {c, 2}} {
		if err := Generate(p.path, testSize+12345, p.seed, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if testfile.SHA256(t, a) != testfile.SHA256(t, b) {
		t.Error("same seed gave different images")
	}
	if testfile.SHA256(t, a) == testfile.SHA256(t, c) {
		t.Error("different seeds gave the same image")
	}
	if fi, _ := os.Stat(a); fi.Size() != testSize+12345 {
		t.Errorf("size %d, want %d", fi.Size(), testSize+12345)
	}
}

func TestGenerateMix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := Generate(path, testSize, 7, Options{}); err != nil {
		t.Fatal(err)
	}
	img := readFile(t, path)
	want := Layout(testSize, 7, Reference)
	var count [3]int
	changes := 0
	for i, k := range want {
		got := classify(t, img[i*RegionSize:(i+1)*RegionSize])
		if got != k {
			t.Fatalf("region %d: got %v, layout says %v", i, got, k)
		}
		count[k]++
		if i > 0 && want[i-1] != k {
			changes++
		}
	}
	if count[Zero] != 32 || count[Random] != 13 || count[Text] != 19 {
		t.Errorf("zero/random/text regions = %v, want [32 13 19]", count)
	}
	// Interleaved, not banded: a shuffle of this mix changes kind at about
	// 62% of region boundaries; bands would change at two.
	if changes < len(want)*2/5 {
		t.Errorf("kind changes at %d of %d boundaries: banded layout", changes, len(want)-1)
	}
	// Text compresses like text; random data does not; text never repeats.
	var text, random []byte
	for i, k := range want {
		switch r := img[i*RegionSize : (i+1)*RegionSize]; k {
		case Text:
			if text != nil && bytes.Equal(r[:4096], text[:4096]) {
				t.Fatal("two text regions start alike")
			}
			text = append(text, r...)
		case Random:
			random = append(random, r...)
		}
	}
	if r := zstdRatio(t, text); r < 2.8 || r > 4.5 {
		t.Errorf("text compresses %.2fx with zstd, want 3-4x", r)
	}
	if r := zstdRatio(t, random); r > 1.01 {
		t.Errorf("random data compresses %.2fx", r)
	}
}

func TestGenerateSparse(t *testing.T) {
	dir := t.TempDir()
	sparse, full := filepath.Join(dir, "sparse"), filepath.Join(dir, "full")
	if err := Generate(sparse, testSize, 3, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Generate(full, testSize, 3, Options{NonSparse: true}); err != nil {
		t.Fatal(err)
	}
	if testfile.SHA256(t, sparse) != testfile.SHA256(t, full) {
		t.Error("sparse and non-sparse images differ in content")
	}
	data := int64(testSize / 2) // the reference mix: half holes
	if a := allocated(t, sparse); a < data || a > data+data/16 {
		t.Errorf("sparse image allocates %d bytes, want about %d", a, data)
	}
	if a := allocated(t, full); a < testSize {
		t.Errorf("non-sparse image allocates %d bytes, want %d", a, testSize)
	}

	few := filepath.Join(dir, "few")
	if err := GenerateSparse(few, testSize, 5<<20, 4); err != nil {
		t.Fatal(err)
	}
	img := readFile(t, few)
	nonZero := 0
	for i := 0; i < len(img); i += RegionSize {
		if !isZero(img[i : i+RegionSize]) {
			nonZero++
		}
	}
	if nonZero != 5 {
		t.Errorf("GenerateSparse wrote %d data regions, want 5", nonZero)
	}
	if a := allocated(t, few); a < 5<<20 || a > 6<<20 {
		t.Errorf("GenerateSparse allocates %d bytes, want about 5 MiB", a)
	}
}

func TestMutate(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "night1"), filepath.Join(dir, "night2")
	if err := Generate(src, testSize, 1, Options{}); err != nil {
		t.Fatal(err)
	}
	const insert = 3<<20 + 4096
	st, err := Mutate(src, dst, 2, MutateOptions{ChangedFraction: 0.05, InsertBytes: insert})
	if err != nil {
		t.Fatal(err)
	}
	a, b := readFile(t, src), readFile(t, dst)
	if int64(len(b)) != testSize+insert || st.DstSize != int64(len(b)) {
		t.Fatalf("night 2 has %d bytes (stats %d), want %d", len(b), st.DstSize, testSize+insert)
	}
	if st.Blocks != 1024 || st.ChangedBlocks != 51 || len(st.Changed) != 51 {
		t.Errorf("blocks %d changed %d, want 1024 and 51", st.Blocks, st.ChangedBlocks)
	}
	if st.InsertOffset != testSize/2 {
		t.Errorf("insert at %d, want %d", st.InsertOffset, testSize/2)
	}
	changed := map[int64]bool{}
	for _, c := range st.Changed {
		changed[c] = true
	}
	holes := int64(0)
	for blk := int64(0); blk < st.Blocks; blk++ {
		off := blk * BlockSize
		to := off
		if off >= st.InsertOffset {
			to += insert
		}
		old, cur := a[off:off+BlockSize], b[to:to+BlockSize]
		same := bytes.Equal(old, cur)
		if changed[blk] {
			if same {
				t.Errorf("block %d should have changed", blk)
			}
			if isZero(old) {
				holes++
			}
			if isZero(cur) {
				t.Errorf("changed block %d is zeros", blk)
			}
		} else if !same {
			t.Errorf("block %d changed but is not in the list", blk)
		}
	}
	if holes != st.ChangedInHoles || holes == 0 || holes == st.ChangedBlocks {
		t.Errorf("changed blocks in holes: counted %d, stats %d, of %d", holes, st.ChangedInHoles, st.ChangedBlocks)
	}
	ins := b[st.InsertOffset : st.InsertOffset+insert]
	if classify(t, ins) != Text || bytes.Contains(ins, make([]byte, 64)) {
		t.Error("inserted bytes are not text")
	}
	// Holes stay holes: about half the source plus what was written.
	written := int64(testSize/2) + insert + (st.ChangedInHoles * BlockSize)
	if al := allocated(t, dst); al > written+written/16 {
		t.Errorf("night 2 allocates %d bytes, want about %d", al, written)
	}

	// Another seed changes other blocks.
	st2, err := Mutate(src, filepath.Join(dir, "other"), 3, MutateOptions{ChangedFraction: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(st.Changed, st2.Changed) {
		t.Error("seeds 2 and 3 changed the same blocks")
	}
}

func TestMutateZeroIsSparseCopy(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := Generate(src, testSize, 5, Options{NonSparse: true}); err != nil {
		t.Fatal(err)
	}
	st, err := Mutate(src, dst, 1, MutateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.ChangedBlocks != 0 || st.DstSize != testSize {
		t.Errorf("stats %+v, want no change", st)
	}
	if testfile.SHA256(t, src) != testfile.SHA256(t, dst) {
		t.Error("copy differs from the source")
	}
	// The source has no holes; the copy skips its zero blocks.
	if al := allocated(t, dst); al > testSize/2+testSize/32 {
		t.Errorf("copy allocates %d bytes, want about %d", al, testSize/2)
	}
}

func TestInvalidOptions(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(filepath.Join(dir, "x"), testSize, 1, Options{Mix: &Mix{Zero: 0.8, Random: 0.3}}); err == nil {
		t.Error("mix over 100% accepted")
	}
	if _, err := Mutate(filepath.Join(dir, "missing"), filepath.Join(dir, "y"), 1, NextNight); err == nil {
		t.Error("missing source accepted")
	}
	if _, err := Mutate(filepath.Join(dir, "x"), filepath.Join(dir, "y"), 1, MutateOptions{ChangedFraction: 2}); err == nil {
		t.Error("changed fraction 2 accepted")
	}
}
