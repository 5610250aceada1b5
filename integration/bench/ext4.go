package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/dustin/go-humanize"
)

// RealDisk describes the ext4 scenario's images: a file system made by
// mkfs.ext4 -d from a generated system tree (night 1), and the same image
// with files grown, rewritten, added and removed by debugfs (night 2).
type RealDisk struct {
	Size            int64   `json:"size"`
	Files           int     `json:"files"`
	Dirs            int     `json:"dirs"`
	DataBytes       int64   `json:"data_bytes"`
	Night1Allocated int64   `json:"night1_allocated"`
	Night2Allocated int64   `json:"night2_allocated"`
	ChangedFiles    int     `json:"changed_files"`
	WrittenBytes    int64   `json:"written_bytes"` // bytes of the files night 2 wrote
	RemovedFiles    int     `json:"removed_files"`
	GenerateSeconds float64 `json:"generate_seconds"`
}

// errNoExt4Tools: mkfs.ext4, debugfs or e2fsck is missing.
var errNoExt4Tools = errors.New("e2fsprogs missing")

// ext4UUID fixes the file system's UUID and directory hash seed, so that
// the same seed gives the same layout.
const ext4UUID = "c0ffe400-0000-4000-8000-000000000001"

// e2fsTool finds one of e2fsprogs' programs; they live in /sbin, which is
// not on every user's PATH.
func e2fsTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found (scripts/install-peers.sh installs it: apt-get install -y e2fsprogs)", errNoExt4Tools, name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// makeExt4 writes the ext4 scenario's two nights under WORKDIR/images.
func (b *bench) makeExt4(ctx context.Context) (*scenario, error) {
	dir := filepath.Join(b.cfg.Workdir, "images")
	sc := &scenario{name: scenarioExt4, night1: filepath.Join(dir, "ext4-night1.img"),
		night2: filepath.Join(dir, "ext4-night2.img"), live: filepath.Join(b.cfg.Workdir, "live", "ext4.img")}
	tree, staging := filepath.Join(dir, "ext4-tree"), filepath.Join(dir, "ext4-staging")
	for _, d := range []string{tree, staging} {
		// A run killed midway, in the same work directory, left them.
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
	}
	start := time.Now()
	rd, err := buildExt4(ctx, tree, staging, sc.night1, sc.night2, b.cfg.Ext4Size, b.cfg.Ext4Data, b.cfg.Seed)
	if err != nil {
		return nil, err
	}
	syscall.Sync()
	rd.GenerateSeconds = time.Since(start).Seconds()
	b.res.RealDisk = rd
	b.logf("ext4 disk: %s with %d files (%s) in %d directories, %s allocated; night 2: %d files written (%s), %d removed; made in %.1fs",
		humanize.IBytes(uint64(rd.Size)), rd.Files, humanize.IBytes(uint64(rd.DataBytes)), rd.Dirs,
		humanize.IBytes(uint64(rd.Night1Allocated)), rd.ChangedFiles, humanize.IBytes(uint64(rd.WrittenBytes)),
		rd.RemovedFiles, rd.GenerateSeconds)
	return sc, nil
}

// buildExt4 generates a system tree of data bytes in tree, makes night1 an
// ext4 image of size bytes holding it, and night2 a copy changed through
// debugfs (the new files staged in staging); both are checked with e2fsck.
// No loop device or mount is needed.
func buildExt4(ctx context.Context, tree, staging, night1, night2 string, size, data int64, seed uint64) (*RealDisk, error) {
	mkfs, err := e2fsTool("mkfs.ext4")
	if err != nil {
		return nil, err
	}
	st, err := diskgen.Tree(tree, data, seed)
	if err != nil {
		return nil, err
	}
	rd := &RealDisk{Size: size, Files: len(st.Files), Dirs: st.Dirs, DataBytes: st.Bytes}
	if err := makeSparse(night1, size); err != nil {
		return nil, err
	}
	if err := runE2fs(ctx, "", mkfs, "-q", "-F", "-t", "ext4", "-L", "coffer-bench", "-U", ext4UUID,
		"-E", "hash_seed="+ext4UUID+",root_owner=0:0", "-d", tree, night1); err != nil {
		return nil, err
	}
	if _, err := diskgen.Mutate(night1, night2, 0, diskgen.MutateOptions{}); err != nil { // a sparse copy
		return nil, err
	}
	changes, err := diskgen.TreeNight(st.Files, staging, seed+1)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if c.Op == "remove" {
			rd.RemovedFiles++
		} else {
			rd.ChangedFiles++
			rd.WrittenBytes += c.File.Size
		}
	}
	if err := applyChanges(ctx, staging, night2, changes, st.Files); err != nil {
		return nil, err
	}
	for _, img := range []string{night1, night2} {
		if err := fsck(ctx, img); err != nil {
			return nil, err
		}
	}
	rd.Night1Allocated, _ = allocated(night1)
	rd.Night2Allocated, _ = allocated(night2)
	return rd, nil
}

func makeSparse(p string, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// debugfsScript returns the debugfs commands that apply changes: a file
// is written from its staged copy (path relative to the staging
// directory), after removing the old one when it exists; new directories
// are made first.
func debugfsScript(changes []diskgen.TreeChange, existing func(rel string) bool) string {
	var sb strings.Builder
	made := map[string]bool{}
	cwd := ""
	for _, c := range changes {
		dir, name := path.Split(c.File.Path)
		dir = strings.TrimSuffix(dir, "/")
		if !existing(dir) && !made[dir] {
			fmt.Fprintf(&sb, "mkdir /%s\n", dir)
			made[dir] = true
		}
		if dir != cwd {
			fmt.Fprintf(&sb, "cd /%s\n", dir)
			cwd = dir
		}
		if c.Op == "remove" || existing(c.File.Path) {
			fmt.Fprintf(&sb, "rm %s\n", name)
		}
		if c.Op == "write" {
			fmt.Fprintf(&sb, "write %s %s\n", c.File.Path, name)
		}
	}
	return sb.String()
}

// applyChanges runs debugfs -w on img, which holds the files of night 1,
// with the changes' script, from the staging directory. debugfs exits 0
// even when a command fails, so any message on its stderr but its banner
// is an error.
func applyChanges(ctx context.Context, staging, img string, changes []diskgen.TreeChange, night1 []diskgen.TreeFile) error {
	debugfs, err := e2fsTool("debugfs")
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, f := range night1 {
		known[f.Path] = true
		for d := path.Dir(f.Path); d != "." && !known[d]; d = path.Dir(d) {
			known[d] = true
		}
	}
	script := filepath.Join(filepath.Dir(img), filepath.Base(img)+".debugfs")
	if err := os.WriteFile(script, []byte(debugfsScript(changes, func(rel string) bool { return known[rel] })), 0o644); err != nil {
		return err
	}
	defer os.Remove(script)
	return runE2fs(ctx, staging, debugfs, "-w", "-f", script, img)
}

// fsck checks img read-only with e2fsck.
func fsck(ctx context.Context, img string) error {
	e2fsck, err := e2fsTool("e2fsck")
	if err != nil {
		return err
	}
	if err := runE2fs(ctx, "", e2fsck, "-f", "-n", img); err != nil {
		return fmt.Errorf("the generated image %s is not a clean ext4 file system: %w", img, err)
	}
	return nil
}

// runE2fs runs one of e2fsprogs' programs in dir; it fails when the program
// fails or prints anything on stderr but its version banner.
func runE2fs(ctx context.Context, dir, prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	cmd.Stderr = &stderr
	// A fixed clock for the times mke2fs writes itself.
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME="+fmt.Sprint(diskgen.TreeTime.Unix()))
	err := cmd.Run()
	var msgs []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !banner(line) {
			msgs = append(msgs, line)
		}
	}
	if err == nil && len(msgs) > 0 {
		err = errors.New("reported errors")
	}
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(prog), strings.Join(args, " "), err, shorten(strings.Join(msgs, " | "), 400))
	}
	return nil
}

// banner reports whether line is an e2fsprogs version banner, such as
// "debugfs 1.47.0 (5-Feb-2023)".
func banner(line string) bool {
	f := strings.Fields(line)
	return len(f) == 3 && strings.HasPrefix(f[2], "(") && strings.HasSuffix(f[2], ")") &&
		strings.Count(f[1], ".") >= 1
}
