package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cofferhq/coffer/internal/parity"
)

// Unrepairable is damage beyond what the seed's parity rebuilds. It names
// the damaged files.
type Unrepairable struct {
	// Damaged are all the damaged files; Involved those whose bytes share
	// columns with too many others (internal/parity).
	Damaged  []Damaged
	Involved []string
	Parity   int
}

func (e *Unrepairable) Error() string {
	names := make([]string, 0, len(e.Damaged))
	for _, d := range e.Damaged[:min(len(e.Damaged), 20)] {
		names = append(names, d.Name+" ("+d.Problem+")")
	}
	more := ""
	if len(e.Damaged) > 20 {
		more = fmt.Sprintf(" and %d more", len(e.Damaged)-20)
	}
	return fmt.Sprintf("the seed is damaged beyond its parity: %d files are damaged and its %d parity shards rebuild at most %d in the same bytes; damaged: %s%s. "+
		"Nothing was imported: copy those files from another copy of the seed (or the export's disk) and import again, or export a new seed",
		len(e.Damaged), e.Parity, e.Parity, strings.Join(names, ", "), more)
}

// RepairOptions tune Repair.
type RepairOptions struct {
	MemoryBudget int64
	Progress     func(n int64)
}

// Repair rebuilds the damaged objects from the seed's parity into workDir
// and checks each against the manifest's SHA-256; from then on Path gives
// the rebuilt file for them. Damaged parity files need nothing. It returns
// an *Unrepairable, before writing anything, when the damage is beyond the
// parity.
func (s *Seed) Repair(ctx context.Context, damaged []Damaged, workDir string, o RepairOptions) error {
	l, err := s.Manifest.Layout()
	if err != nil {
		return err
	}
	objs := s.Manifest.Objects
	sizes := sizesOf(objs)
	idx := make([]int, len(damaged))
	for i, d := range damaged {
		idx[i] = d.Index
	}
	if err := parity.Check(l, sizes, idx); err != nil {
		return s.unrepairable(err, damaged, l)
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return err
	}
	files := s.Manifest.Files()
	paths := map[int]string{}
	var mu sync.Mutex
	open := func(i int) (io.ReaderAt, error) { return os.Open(FilePath(s.Root, files[i])) }
	out := func(i int) (io.WriterAt, error) { // called once per window: truncate only the first time
		mu.Lock()
		defer mu.Unlock()
		flags := os.O_CREATE | os.O_WRONLY
		p, ok := paths[i]
		if !ok {
			p = filepath.Join(workDir, fmt.Sprintf("%s-%d", s.Manifest.ID[:12], i))
			paths[i] = p
			flags |= os.O_TRUNC
		}
		return os.OpenFile(p, flags, 0o600)
	}
	if err := parity.Repair(ctx, l, sizes, idx, open, out, parity.Options{MemoryBudget: o.MemoryBudget, Progress: o.Progress}); err != nil {
		return s.unrepairable(err, damaged, l)
	}
	buf := make([]byte, 1<<20)
	for i, p := range paths {
		if err := os.Truncate(p, objs[i].Size); err != nil {
			return err
		}
		sum, _, err := hashFile(p, buf)
		if err != nil {
			return err
		}
		if sum != objs[i].SHA256 {
			return fmt.Errorf("%s rebuilt from parity does not match the manifest's SHA-256: the parity files are damaged in a way their hashes did not show; import from another copy of the seed", objs[i].Name)
		}
	}
	if s.repaired == nil {
		s.repaired = map[int]string{}
	}
	for i, p := range paths {
		s.repaired[i] = p
	}
	return nil
}

func (s *Seed) unrepairable(err error, damaged []Damaged, l *parity.Layout) error {
	var u *parity.Unrepairable
	if !errors.As(err, &u) {
		return err
	}
	files := s.Manifest.Files()
	e := &Unrepairable{Damaged: damaged, Parity: l.ParityShards}
	for _, i := range u.Files {
		if i >= 0 && i < len(files) {
			e.Involved = append(e.Involved, files[i].Name)
		}
	}
	return e
}

// Path is where object i of the manifest is read from: the rebuilt copy
// when Repair rebuilt it, else the seed's own file.
func (s *Seed) Path(i int) string {
	if p, ok := s.repaired[i]; ok {
		return p
	}
	return FilePath(s.Root, s.Manifest.Objects[i])
}
