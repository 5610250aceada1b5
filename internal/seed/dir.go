package seed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/fsx"
)

// The seed directory, inside the directory the export was given:
//
//	coffer-seed/SEED.json        the manifest
//	coffer-seed/SEED.sig         its signature (hex, one line)
//	coffer-seed/SEED.copy.json   a second copy of both, so that one damaged
//	coffer-seed/SEED.copy.sig    sector does not lose the manifest
//	coffer-seed/objects/<name>   every repository object, by object name
//	coffer-seed/parity/<j>       parity files
//	coffer-seed/state/           the export's own state (not listed)
const (
	RootDir       = "coffer-seed"
	ManifestFile  = "SEED.json"
	SignatureFile = "SEED.sig"
	copyManifest  = "SEED.copy.json"
	copySignature = "SEED.copy.sig"
	ObjectsDir    = "objects"
	StateDir      = "state"
)

// Root returns the seed's folder for dir: dir itself when it holds
// SEED.json or objects/, else dir/coffer-seed.
func Root(dir string) string {
	for _, n := range []string{ManifestFile, copyManifest, ObjectsDir} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return dir
		}
	}
	return filepath.Join(dir, RootDir)
}

// FilePath is where file f of the seed rooted at root lives: objects under
// objects/, parity files under parity/.
func FilePath(root string, f File) string {
	if isParityName(f.Name) {
		return filepath.Join(root, filepath.FromSlash(f.Name))
	}
	return filepath.Join(root, ObjectsDir, filepath.FromSlash(f.Name))
}

func isParityName(name string) bool { return len(name) > 7 && name[:7] == "parity/" }

// Seed is a seed directory with its manifest read (not yet verified).
type Seed struct {
	Root     string
	Manifest *Manifest
	// Body and Sig are the bytes of the manifest in use and its signature.
	Body, Sig []byte
	// UsedCopy is set when the first copy of the manifest was unreadable
	// or did not verify and the second one is in use.
	UsedCopy bool
	alt      *Seed // the second copy, when the first one is in use
	// repaired maps object indexes to their copies rebuilt by Repair.
	repaired map[int]string
}

// Open reads the seed in dir (see Root): its manifest, or the second copy
// when the first cannot be read or parsed. The signature is checked by
// Verify.
func Open(dir string) (*Seed, error) {
	root := Root(dir)
	first, err1 := readCopy(root, ManifestFile, SignatureFile)
	second, err2 := readCopy(root, copyManifest, copySignature)
	switch {
	case err1 == nil:
		first.alt = second
		return first, nil
	case err2 == nil:
		second.UsedCopy = true
		return second, nil
	}
	if errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist) {
		return nil, fmt.Errorf("%s holds no seed (no %s): give the directory coffer seed export wrote", dir, ManifestFile)
	}
	return nil, fmt.Errorf("the seed's manifest in %s is unreadable in both copies: %v; and %v", root, err1, err2)
}

func readCopy(root, manifest, sig string) (*Seed, error) {
	body, err := readLimited(filepath.Join(root, manifest), MaxManifestSize)
	if err != nil {
		return nil, err
	}
	s, err := readLimited(filepath.Join(root, sig), 1<<10)
	if err != nil {
		return nil, err
	}
	m, err := Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifest, err)
	}
	return &Seed{Root: root, Manifest: m, Body: body, Sig: s}, nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	return b, nil
}

// Verify checks the manifest's signature against the tenant's public
// signing key, falling back to the second copy. It fails with an error
// wrapping crypto.ErrBadSignature when neither copy verifies: a tampered
// manifest, or a seed another key signed.
func (s *Seed) Verify(public string) error {
	if s.Manifest.Signer != public && (s.alt == nil || s.alt.Manifest.Signer != public) {
		return fmt.Errorf("the seed was signed by key %s, not by this tenant's key %s: %w",
			crypto.SigningKeyFingerprint(s.Manifest.Signer), crypto.SigningKeyFingerprint(public), crypto.ErrBadSignature)
	}
	err := Verify(public, s.Body, s.Sig)
	if err == nil {
		return nil
	}
	if s.alt != nil && Verify(public, s.alt.Body, s.alt.Sig) == nil {
		*s = Seed{Root: s.alt.Root, Manifest: s.alt.Manifest, Body: s.alt.Body, Sig: s.alt.Sig, UsedCopy: true}
		return nil
	}
	return fmt.Errorf("the seed's manifest does not verify against the tenant's signing key %s (changed after signing?): %w",
		crypto.SigningKeyFingerprint(public), err)
}

// WriteManifest signs m and writes both copies of the manifest and its
// signature into root, each file replaced atomically.
func WriteManifest(root string, m *Manifest, k *crypto.SigningKey) error {
	body, err := m.Marshal()
	if err != nil {
		return err
	}
	sig := Sign(k, body)
	for _, f := range []struct {
		name string
		b    []byte
	}{{ManifestFile, body}, {SignatureFile, sig}, {copyManifest, body}, {copySignature, sig}} {
		if err := fsx.WriteFileAtomic(root, f.name, f.b); err != nil {
			return fmt.Errorf("writing the seed's manifest: %w", err)
		}
	}
	return nil
}

// Damaged is a file of the seed that is missing, short, long or whose
// bytes do not hash to the manifest's SHA-256.
type Damaged struct {
	// Index numbers the file as Manifest.Files does.
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Problem string `json:"problem"`
}

// CheckOptions tune Check.
type CheckOptions struct {
	// Workers hash files concurrently (default 4).
	Workers int
	// Progress, when set, is called with the bytes each file added.
	Progress func(n int64)
}

// Check hashes every file of the seed (objects and parity) and returns the
// damaged ones in manifest order. A file that cannot be read is damaged,
// not an error; only ctx ends Check early.
func (s *Seed) Check(ctx context.Context, o CheckOptions) ([]Damaged, error) {
	files := s.Manifest.Files()
	problems := make([]string, len(files))
	err := eachFile(ctx, len(files), o.Workers, func(i int, buf []byte) error {
		problems[i] = checkFile(FilePath(s.Root, files[i]), files[i], buf, o.Progress)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Damaged
	for i, p := range problems {
		if p != "" {
			out = append(out, Damaged{Index: i, Name: files[i].Name, Problem: p})
		}
	}
	return out, nil
}

// checkFile returns what is wrong with the file at path, or "".
func checkFile(path string, f File, buf []byte, progress func(int64)) string {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	if err != nil {
		return "unreadable: " + err.Error()
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(fh, f.Size+1), buf)
	if progress != nil {
		progress(min(n, f.Size))
	}
	switch {
	case err != nil:
		return "unreadable: " + err.Error()
	case n < f.Size:
		return fmt.Sprintf("truncated: %d of %d bytes", n, f.Size)
	case n > f.Size:
		return fmt.Sprintf("longer than its %d bytes", f.Size)
	case hex.EncodeToString(h.Sum(nil)) != f.SHA256:
		return "damaged: its SHA-256 differs from the manifest's"
	}
	return ""
}

// eachFile calls fn for files 0..n-1, workers at a time (4 when 0), each
// worker with its own read buffer; the first error stops it.
func eachFile(ctx context.Context, n, workers int, fn func(i int, buf []byte) error) error {
	if workers <= 0 {
		workers = 4
	}
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			buf := make([]byte, 1<<20)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || gctx.Err() != nil {
					return gctx.Err()
				}
				if err := fn(i, buf); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}
