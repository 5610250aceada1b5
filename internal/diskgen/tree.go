package diskgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"time"
)

// TreeTime is the modification time of every file and directory Tree
// writes, so that a file system built from the tree does not depend on when
// it was generated.
var TreeTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fileClass is one kind of file of a system disk's tree.
type fileClass struct {
	name     string  // what the files stand for
	share    float64 // of the tree's data bytes
	minSize  int64
	maxSize  int64 // sizes are log-uniform in [minSize, maxSize]
	perDir   int   // files per directory
	dirs     string
	ext      string
	binaries bool // random bytes with a text string table, else text
}

// treeClasses make a plausible Linux system disk: configuration, logs,
// executables and libraries, and many small files (documentation, scripts,
// language packages).
var treeClasses = []fileClass{
	{name: "config", share: 0.05, minSize: 128, maxSize: 16 << 10, perDir: 40, dirs: "etc", ext: ".conf"},
	{name: "log", share: 0.20, minSize: 256 << 10, maxSize: 24 << 20, perDir: 24, dirs: "var/log", ext: ".log"},
	{name: "binary", share: 0.45, minSize: 16 << 10, maxSize: 16 << 20, perDir: 200, dirs: "usr/lib/x86_64-linux-gnu", ext: ".so", binaries: true},
	{name: "small", share: 0.30, minSize: 256, maxSize: 32 << 10, perDir: 60, dirs: "usr/share/doc", ext: ".txt"},
}

// TreeFile is one regular file of a generated tree.
type TreeFile struct {
	Path  string // slash-separated, relative to the tree's root
	Size  int64
	Class string // config, log, binary or small
	seed  uint64
}

// TreeStats describe a generated tree.
type TreeStats struct {
	Files []TreeFile
	Dirs  int
	Bytes int64
}

// PlanTree returns the files of a tree of about dataBytes, from seed: the
// same arguments always give the same plan.
func PlanTree(dataBytes int64, seed uint64) ([]TreeFile, error) {
	if dataBytes < 1<<20 {
		return nil, fmt.Errorf("diskgen: a tree needs at least 1 MiB of data, got %d bytes", dataBytes)
	}
	r := rand.New(rand.NewPCG(seed, 0x74726565))
	var files []TreeFile
	for ci, c := range treeClasses {
		budget := int64(float64(dataBytes) * c.share)
		for n := 0; budget > 0; n++ {
			size := min(logUniform(r, c.minSize, c.maxSize), budget)
			budget -= size
			dir := fmt.Sprintf("%s/%s%03d", c.dirs, c.name, n/c.perDir)
			files = append(files, TreeFile{
				Path:  fmt.Sprintf("%s/%s-%05d%s", dir, c.name, n, c.ext),
				Size:  size,
				Class: c.name,
				seed:  splitmix(seed ^ uint64(ci)<<56 ^ uint64(n)),
			})
		}
	}
	return files, nil
}

func logUniform(r *rand.Rand, lo, hi int64) int64 {
	l, h := math.Log(float64(lo)), math.Log(float64(hi))
	return int64(math.Exp(l + r.Float64()*(h-l)))
}

// Tree writes a deterministic directory tree of about dataBytes under dir
// (which must not exist or be empty), shaped like a mostly empty system
// disk: see treeClasses. Every file's content comes from its own stream of
// seed, and every time stamp is TreeTime.
func Tree(dir string, dataBytes int64, seed uint64) (TreeStats, error) {
	files, err := PlanTree(dataBytes, seed)
	if err != nil {
		return TreeStats{}, err
	}
	st := TreeStats{Files: files}
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	st.Dirs = len(dirs)
	for _, f := range files {
		if err := WriteTreeFile(dir, f, 0); err != nil {
			return st, err
		}
		st.Bytes += f.Size
	}
	for d := range dirs {
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(d)), TreeTime, TreeTime); err != nil {
			return st, err
		}
	}
	return st, os.Chtimes(dir, TreeTime, TreeTime)
}

// WriteTreeFile writes f under root, creating its directory: its content
// is version `version` of the file (Tree writes version 0).
func WriteTreeFile(root string, f TreeFile, version uint64) error {
	return writeTreeData(root, f.Path, treeContent(f, version))
}

func writeTreeData(root, rel string, data []byte) error {
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return err
	}
	return os.Chtimes(p, TreeTime, TreeTime)
}

// treeContent returns the bytes of a version of f: text for text classes;
// for binaries, random bytes followed by a text string table of a fifth of
// the file, as in an executable.
func treeContent(f TreeFile, version uint64) []byte {
	p := make([]byte, f.Size)
	s := splitmix(f.seed ^ splitmix(version^0x76657273))
	if f.Class != "binary" {
		fillText(p, s)
		return p
	}
	strs := len(p) / 5
	fillRandom(p[:len(p)-strs], s, 0)
	fillText(p[len(p)-strs:], s)
	return p
}

// TreeChange is one change of a tree from one night to the next.
type TreeChange struct {
	File TreeFile // for a write, its new size
	Op   string   // "write" (a new or rewritten file) or "remove"
	// Appended is set for a log that grew: its new content is its old
	// content followed by Appended bytes of new text.
	Appended int64
}

// content returns the new content of a written file.
func (c TreeChange) content() []byte {
	if c.Appended == 0 {
		return treeContent(c.File, 1)
	}
	old := c.File
	old.Size -= c.Appended
	data := treeContent(old, 0)
	tail := make([]byte, c.Appended)
	fillText(tail, splitmix(c.File.seed^0x617070656e64))
	return append(data, tail...)
}

// TreeNight plans the next night of a tree planned with PlanTree and writes
// the new content of every written file under staging: logs grow by 1-5%,
// 2% of the configuration files and 3% of the binaries are rewritten (a
// package upgrade), 0.5% of the small files are removed and 1% new ones
// appear in new directories; each at least one file.
func TreeNight(files []TreeFile, staging string, seed uint64) ([]TreeChange, error) {
	r := rand.New(rand.NewPCG(seed, 0x6e69676874))
	byClass := map[string][]TreeFile{}
	for _, f := range files {
		byClass[f.Class] = append(byClass[f.Class], f)
	}
	var changes []TreeChange
	for _, f := range byClass["log"] {
		grow := max(4<<10, f.Size*int64(1+r.IntN(5))/100)
		f.Size += grow
		changes = append(changes, TreeChange{File: f, Op: "write", Appended: grow})
	}
	for _, p := range []struct {
		class, op string
		share     float64
	}{{"config", "write", 0.02}, {"binary", "write", 0.03}, {"small", "remove", 0.005}} {
		fs := byClass[p.class]
		if len(fs) == 0 {
			continue
		}
		n := max(1, int(float64(len(fs))*p.share))
		for _, i := range r.Perm(len(fs))[:n] {
			changes = append(changes, TreeChange{File: fs[i], Op: p.op})
		}
	}
	for n := range max(1, len(byClass["small"])/100) {
		f := TreeFile{Path: fmt.Sprintf("usr/share/doc/newpkg%02d/new-%05d.txt", n/60, n), Class: "small",
			Size: logUniform(r, 256, 32<<10), seed: splitmix(seed ^ 0x6e6577 ^ uint64(n))}
		changes = append(changes, TreeChange{File: f, Op: "write"})
	}
	for _, c := range changes {
		if c.Op != "write" {
			continue
		}
		if err := writeTreeData(staging, c.File.Path, c.content()); err != nil {
			return nil, err
		}
	}
	return changes, nil
}
