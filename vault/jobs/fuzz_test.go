package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// mapStore is a Store over a map, for names a file system cannot hold.
type mapStore struct{ objs map[string][]byte }

func (m *mapStore) Put(context.Context, string, io.ReaderAt, int64) error { return store.ErrDenied }
func (m *mapStore) Delete(context.Context, string) error                  { return store.ErrDenied }
func (m *mapStore) Location() string                                      { return "map" }
func (m *mapStore) Close() error                                          { return nil }

func (m *mapStore) Get(_ context.Context, name string, off, n int64, fn func(io.Reader) error) error {
	b, ok := m.objs[name]
	if !ok {
		return store.ErrNotFound
	}
	b = b[off:]
	if n >= 0 {
		b = b[:n]
	}
	return fn(bytes.NewReader(b))
}

func (m *mapStore) Stat(_ context.Context, name string) (store.Info, error) {
	b, ok := m.objs[name]
	if !ok {
		return store.Info{}, store.ErrNotFound
	}
	return store.Info{Name: name, Size: int64(len(b))}, nil
}

func (m *mapStore) List(_ context.Context, prefix string, fn func(store.Info) error) error {
	for name, b := range m.objs {
		if strings.HasPrefix(name, prefix) {
			if err := fn(store.Info{Name: name, Size: int64(len(b))}); err != nil {
				return err
			}
		}
	}
	return nil
}

// FuzzCheckKeyless feeds a check objects whose names and bytes come from
// the fuzzer, one per line as "name<TAB>content"; a content of "=" makes an
// object named by its own SHA-256 under the prefix given as the name.
// Whatever the store holds, the check never panics, reports every name
// outside the grammar as foreign and every content-named object whose bytes
// do not match its name as damaged.
func FuzzCheckKeyless(f *testing.F) {
	f.Add("config\t{}\nkeys/\t=\nindex/\t=\nsnapshots/" + strings.Repeat("a", 64) + "\tx")
	f.Add("data/ab/" + strings.Repeat("ab", 32) + "\t" + strings.Repeat("p", 40) + "\n../etc\tx\n\x00\t")
	f.Add("drills/\t=\ndata/\t=\nconfig\t")
	f.Fuzz(func(t *testing.T, spec string) {
		m := &mapStore{objs: map[string][]byte{}}
		for _, line := range strings.Split(spec, "\n") {
			name, content, _ := strings.Cut(line, "\t")
			if content == "=" {
				name, content = selfNamed(name, line)
			}
			m.objs[name] = []byte(content)
		}
		rep, err := CheckKeyless(context.Background(), m, KeylessOptions{ReadDataPercent: 100})
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]string{}
		for _, p := range rep.Problems {
			bad[p.Object] = p.Kind
		}
		for name, b := range m.objs {
			kind, err := vaultapi.ParseRepoName(name)
			sum := sha256.Sum256(b)
			switch {
			case err != nil && bad[name] != ProblemForeign:
				t.Fatalf("%q is not reported foreign: %v", name, rep.Problems)
			case err == nil && kind.ContentNamed() && hex.EncodeToString(sum[:]) != vaultapi.NameDigest(name) && bad[name] != ProblemDamaged:
				t.Fatalf("%q does not match its name and is not reported damaged: %v", name, rep.Problems)
			}
		}
		if rep.Objects != len(m.objs) || rep.Errors() > len(rep.Problems) {
			t.Fatalf("report %+v for %d objects", rep, len(m.objs))
		}
	})
}

// selfNamed names content (the line itself) by its SHA-256 under the
// prefix given as the name; data/ gets its two-digit directory.
func selfNamed(prefix, line string) (string, string) {
	sum := sha256.Sum256([]byte(line))
	h := hex.EncodeToString(sum[:])
	if prefix == "data/" {
		return prefix + h[:2] + "/" + h, line
	}
	return prefix + h, line
}
