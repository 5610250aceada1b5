package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// fakeAuth knows credentials by their full text.
type fakeAuth struct {
	mu      sync.Mutex
	creds   map[string]*Principal
	revoked map[string]bool
	calls   int
}

func (a *fakeAuth) Authenticate(ctx context.Context, bearer vaultapi.Secret) (*Principal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	id, _, err := vaultapi.ParseCredential(bearer.Reveal())
	if err != nil {
		return nil, vaultapi.Errorf(vaultapi.CodeInvalidCredential, "invalid credential")
	}
	if a.revoked[id] {
		return nil, vaultapi.Errorf(vaultapi.CodeCredentialRevoked, "credential %s was revoked", id)
	}
	p, ok := a.creds[bearer.Reveal()]
	if !ok {
		return nil, vaultapi.Errorf(vaultapi.CodeInvalidCredential, "invalid credential")
	}
	cp := *p
	return &cp, nil
}

func (a *fakeAuth) add(p Principal) (vaultapi.Secret, string) {
	cred, id, _, err := vaultapi.NewCredential()
	if err != nil {
		panic(err)
	}
	p.CredentialID = id
	a.mu.Lock()
	a.creds[cred.Reveal()] = &p
	a.mu.Unlock()
	return cred, id
}

func (a *fakeAuth) suspend(tid string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.creds {
		if p.TenantID == tid {
			p.Suspended = on
			p.SuspendedMessage = fmt.Sprintf("tenant %s is suspended by your provider since 2026-01-01: unpaid", p.TenantName)
		}
	}
}

// fakeLedger does exact quota accounting in memory.
type fakeLedger struct {
	mu       sync.Mutex
	quota    map[string]int64
	stored   map[string]int64
	active   map[string]int64 // tenant/name -> size
	commits  int
	releases int
}

type fakeRes struct {
	l        *fakeLedger
	tid, key string
	size     int64
}

func (l *fakeLedger) Reserve(ctx context.Context, p *Principal, name string, kind vaultapi.Kind, size int64, meta ObjectMeta, ttl time.Duration) (Reservation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := p.TenantID + "/" + name
	if _, ok := l.active[key]; ok {
		return nil, ErrBusy
	}
	var inflight int64
	for k, v := range l.active {
		if strings.HasPrefix(k, p.TenantID+"/") {
			inflight += v
		}
	}
	if q := l.quota[p.TenantID]; q > 0 && l.stored[p.TenantID]+inflight+size > q {
		return nil, fmt.Errorf("tenant %q: quota %.2f MiB exceeded (stored %d B, in flight %d B, this object %d B): %w",
			p.TenantName, float64(q)/(1<<20), l.stored[p.TenantID], inflight, size, store.ErrNoSpace)
	}
	l.active[key] = size
	return &fakeRes{l: l, tid: p.TenantID, key: key, size: size}, nil
}

func (r *fakeRes) Commit(ctx context.Context) error {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	delete(r.l.active, r.key)
	r.l.stored[r.tid] += r.size
	r.l.commits++
	return nil
}

func (r *fakeRes) Release(ctx context.Context) error {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	delete(r.l.active, r.key)
	r.l.releases++
	return nil
}

func (l *fakeLedger) state() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("stored=%v active=%v", l.stored, l.active)
}

// snapshotStore is a full listing of the store with each object's SHA-256,
// plus the ledger state.
func snapshotStore(s store.Store, l *fakeLedger) string {
	var lines []string
	err := s.List(context.Background(), "", func(fi store.Info) error {
		b, err := store.ReadAll(context.Background(), s, fi.Name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		lines = append(lines, fmt.Sprintf("%s %d %x", fi.Name, fi.Size, sum))
		return nil
	})
	if err != nil {
		return "list error: " + err.Error()
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n" + l.state()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func packName(b []byte) string {
	h := sha(b)
	return "data/" + h[:2] + "/" + h
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
