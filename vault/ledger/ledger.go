package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

const (
	usagePrefix = "vault/usage/"
	// maxUsageDoc bounds a usage document: about 4000 reservations in flight.
	maxUsageDoc = 1 << 20
	// SettleGrace is how long after its expiry a reservation is settled.
	SettleGrace = 2 * time.Minute
	// DefaultTTL is the reservation lifetime when Reserve gets 0.
	DefaultTTL = 10 * time.Minute
)

// ErrBusy is returned by Reserve when another upload of the same name holds
// a reservation (the server answers 503 upload_in_progress).
var ErrBusy = errors.New("another upload of this object is in progress")

// Meta is what comes with an upload besides its bytes: for a snapshot, what
// the agent reports (the vault cannot decrypt and measure it: the logical
// size of the disks and the data bytes); for a key slot, the credential
// that uploads it (kept in Usage.KeyUploads).
type Meta struct {
	LogicalBytes, DataBytes int64
	Credential              string
	// Job tags the reservation with the job that holds it (a seed import:
	// "seed-import-<tid>"), so the job's next run settles what a killed
	// run left (SettleJob). Uploads through the HTTP API leave it empty.
	Job string
}

// maxKeyUploads bounds Usage.KeyUploads; later key slots are not recorded.
const maxKeyUploads = 256

// Reserved is one reservation in a usage document.
type Reserved struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Size    int64  `json:"size"`
	Logical int64  `json:"logical,omitempty"`
	Data    int64  `json:"data,omitempty"`
	// Credential uploads a key slot (key slots only).
	Credential string `json:"credential,omitempty"`
	// Job is Meta.Job.
	Job     string    `json:"job,omitempty"`
	Expires time.Time `json:"expires"`
}

// Usage is vault/usage/<tid>.json.
type Usage struct {
	registry.Revision
	Tenant       string     `json:"tenant"`
	StoredBytes  int64      `json:"stored_bytes"`
	Objects      int64      `json:"objects"`
	Packs        int64      `json:"packs"`
	PackBytes    int64      `json:"pack_bytes"`
	Snapshots    int64      `json:"snapshots"`
	LogicalBytes int64      `json:"logical_bytes"` // reported by agents, not measured
	DataBytes    int64      `json:"data_bytes"`    // reported by agents, not measured
	Reserved     []Reserved `json:"reserved"`
	// KeyUploads maps key slot names to the credential that stored them
	// (at most maxKeyUploads; for cofferd tenant keys).
	KeyUploads map[string]string `json:"key_uploads,omitempty"`
	// Forgotten names the removal batches already taken off (Forget).
	Forgotten []string  `json:"forgotten,omitempty"`
	Updated   time.Time `json:"updated"`
}

// ReservedBytes is the sum of the sizes reserved in flight.
func (u *Usage) ReservedBytes() int64 {
	var n int64
	for _, r := range u.Reserved {
		n += r.Size
	}
	return n
}

// Info converts the usage to its wire form, where what agents reported is
// kept apart from what the vault measured.
func (u *Usage) Info() vaultapi.UsageInfo {
	return vaultapi.UsageInfo{StoredBytes: u.StoredBytes, Objects: u.Objects, Packs: u.Packs, PackBytes: u.PackBytes,
		Snapshots: u.Snapshots, ReservedBytes: u.ReservedBytes(),
		Reported: vaultapi.ReportedUsage{LogicalBytes: u.LogicalBytes, DataBytes: u.DataBytes}}
}

// Reservation is the handle Reserve returns.
type Reservation struct {
	Reserved
	Tenant string
	l      *Ledger
}

// Commit commits the reservation (see Ledger.Commit).
func (r *Reservation) Commit(ctx context.Context) error { return r.l.Commit(ctx, r) }

// Release releases the reservation (see Ledger.Release).
func (r *Reservation) Release(ctx context.Context) error { return r.l.Release(ctx, r) }

// Ledger keeps tenants' usage.
type Ledger struct {
	sw    store.Swapper
	data  store.Store
	clock clock.Clock
	log   *slog.Logger
	batch batcher // group commit of usage changes (batch.go)
}

// New returns a ledger keeping its documents in meta (which must support
// conditional writes) and settling expired reservations by Stat on data,
// where tenant objects live at ObjectKey(tenant, name). clock and log may be
// nil.
func New(meta, data store.Store, clk clock.Clock, log *slog.Logger) (*Ledger, error) {
	sw, ok := store.As[store.Swapper](meta)
	if !ok {
		return nil, fmt.Errorf("store %s does not support conditional writes, which the vault needs for its state", meta.Location())
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Ledger{sw: sw, data: data, clock: clock.Or(clk), log: log}, nil
}

// ObjectKey is where the vault stores a tenant's object.
func ObjectKey(tenantID, name string) string { return "repos/" + tenantID + "/" + name }

func usageKey(tid string) string { return usagePrefix + tid + ".json" }

func (l *Ledger) now() time.Time { return l.clock.Now().UTC().Truncate(time.Millisecond) }

// Reserve claims size bytes of t's quota for an upload of name. It fails
// with a *store.QuotaError (errors.Is store.ErrNoSpace; its text is for the
// user) when t.Quota > 0 and stored + reserved + size > quota, and with
// ErrBusy while another reservation of name is unsettled. The reservation
// expires after ttl (0: DefaultTTL); the caller must stop writing the object
// before then.
func (l *Ledger) Reserve(ctx context.Context, t *registry.Tenant, name string, k vaultapi.Kind, size int64, m Meta, ttl time.Duration) (*Reservation, error) {
	if !vaultapi.ValidTenantID(t.ID) {
		return nil, fmt.Errorf("ledger: bad tenant id %q", t.ID)
	}
	if _, err := vaultapi.ParseRepoName(name); err != nil {
		return nil, err
	}
	if size < 0 || m.LogicalBytes < 0 || m.DataBytes < 0 {
		return nil, fmt.Errorf("ledger: negative size")
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	id, err := vaultapi.NewID()
	if err != nil {
		return nil, err
	}
	res := &Reservation{Tenant: t.ID, l: l, Reserved: Reserved{ID: id, Name: name, Kind: k.String(), Size: size,
		Logical: m.LogicalBytes, Data: m.DataBytes, Job: m.Job, Expires: l.now().Add(ttl)}}
	if k != vaultapi.KindSnapshot {
		res.Logical, res.Data = 0, 0
	}
	if k == vaultapi.KindKey && vaultapi.ValidID(m.Credential) {
		res.Credential = m.Credential
	}
	st := l.newSettler(t.ID)
	err = l.update(ctx, t.ID, func(cur *Usage, exists bool) (*Usage, error) {
		if !exists {
			cur = &Usage{Tenant: t.ID}
		}
		for _, r := range cur.Reserved {
			if r.ID == id {
				return cur, nil // applied by a Swap whose reply was lost
			}
		}
		next, _ := st.settle(ctx, cur)
		for _, r := range next.Reserved {
			if r.Name == name {
				return nil, ErrBusy
			}
		}
		if inflight := next.ReservedBytes(); t.Quota > 0 && next.StoredBytes+inflight+size > t.Quota {
			return nil, quotaError(t, next.StoredBytes, inflight, size)
		}
		if next == cur {
			next = clone(cur)
		}
		next.Reserved = append(next.Reserved, res.Reserved)
		next.Updated = l.now()
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func quotaError(t *registry.Tenant, stored, inflight, size int64) error {
	return &store.QuotaError{Msg: fmt.Sprintf("tenant %q: quota %s exceeded (stored %s, in flight %s, this object %s). "+
		"Nothing stored was lost; ask your provider to raise the quota (cofferd tenant set-quota), then run the backup again: it resumes where it stopped.",
		t.Name, FormatSize(t.Quota), FormatSize(stored), FormatSize(inflight), FormatSize(size))}
}

// Commit turns a reservation into stored usage. Committing a reservation
// that is no longer there (committed already, or settled) does nothing.
func (l *Ledger) Commit(ctx context.Context, r *Reservation) error {
	return l.finish(ctx, r, true)
}

// Release drops a reservation whose object was not stored. Releasing twice
// does nothing.
func (l *Ledger) Release(ctx context.Context, r *Reservation) error {
	return l.finish(ctx, r, false)
}

// finish removes reservation r, counting it as stored when commit is set.
func (l *Ledger) finish(ctx context.Context, r *Reservation, commit bool) error {
	return l.update(ctx, r.Tenant, func(cur *Usage, exists bool) (*Usage, error) {
		if !exists {
			return nil, fmt.Errorf("ledger: no usage document for tenant %s", r.Tenant)
		}
		i := slices.IndexFunc(cur.Reserved, func(x Reserved) bool { return x.ID == r.ID })
		if i < 0 {
			return cur, nil
		}
		next := clone(cur)
		next.Reserved = slices.Delete(next.Reserved, i, i+1)
		if commit {
			apply(next, cur.Reserved[i])
		}
		next.Updated = l.now()
		return next, nil
	})
}

// Usage returns a tenant's usage, settling expired reservations first. A
// tenant that never stored anything has zero usage.
func (l *Ledger) Usage(ctx context.Context, tenantID string) (*Usage, error) {
	if !vaultapi.ValidTenantID(tenantID) {
		return nil, fmt.Errorf("ledger: bad tenant id %q", tenantID)
	}
	b, _, err := l.sw.ReadVersioned(ctx, usageKey(tenantID), maxUsageDoc)
	if errors.Is(err, store.ErrNotFound) {
		return &Usage{Tenant: tenantID, Reserved: []Reserved{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading usage of tenant %s: %w", tenantID, err)
	}
	u := new(Usage)
	if err := json.Unmarshal(b, u); err != nil {
		return nil, fmt.Errorf("usage of tenant %s is corrupt: %w", tenantID, err)
	}
	now := l.now()
	if !slices.ContainsFunc(u.Reserved, func(r Reserved) bool { return !now.Before(r.Expires.Add(SettleGrace)) }) {
		return u, nil
	}
	st := l.newSettler(tenantID)
	return registry.Update(ctx, l.sw, usageKey(tenantID), maxUsageDoc, func(cur *Usage, exists bool) (*Usage, error) {
		if !exists {
			return nil, fmt.Errorf("usage of tenant %s vanished", tenantID)
		}
		next, _ := st.settle(ctx, cur)
		if next != cur {
			next.Updated = l.now()
		}
		return next, nil
	})
}

// apply adds a reservation's object to the counters.
func apply(u *Usage, r Reserved) {
	u.StoredBytes += r.Size
	u.Objects++
	switch r.Kind {
	case vaultapi.KindPack.String():
		u.Packs++
		u.PackBytes += r.Size
	case vaultapi.KindSnapshot.String():
		u.Snapshots++
		u.LogicalBytes += r.Logical
		u.DataBytes += r.Data
	case vaultapi.KindKey.String():
		if _, ok := u.KeyUploads[r.Name]; r.Credential != "" && !ok && len(u.KeyUploads) < maxKeyUploads {
			if u.KeyUploads == nil {
				u.KeyUploads = map[string]string{}
			}
			u.KeyUploads[r.Name] = r.Credential
		}
	}
}

func clone(u *Usage) *Usage {
	n := *u
	n.Reserved = slices.Clone(u.Reserved)
	if n.Reserved == nil {
		n.Reserved = []Reserved{}
	}
	n.KeyUploads = maps.Clone(u.KeyUploads)
	return &n
}

// settler settles expired reservations; it remembers what Stat said, so an
// Update that reruns its function does not Stat again.
type settler struct {
	l      *Ledger
	tenant string
	seen   map[string]bool // reservation id -> object exists with its size
}

func (l *Ledger) newSettler(tid string) *settler {
	return &settler{l: l, tenant: tid, seen: map[string]bool{}}
}

// settle returns u itself when nothing expired past the grace, else a copy
// with expired reservations committed (object there, same size) or dropped.
// A reservation whose Stat fails stays for a later try.
func (s *settler) settle(ctx context.Context, u *Usage) (*Usage, int) {
	now := s.l.now()
	var next *Usage
	n := 0
	for _, r := range u.Reserved {
		if now.Before(r.Expires.Add(SettleGrace)) {
			continue
		}
		found, ok := s.seen[r.ID]
		if !ok {
			info, err := s.l.data.Stat(ctx, ObjectKey(s.tenant, r.Name))
			switch {
			case err == nil:
				found = info.Size == r.Size
			case errors.Is(err, store.ErrNotFound):
				found = false
			default:
				s.l.log.Warn("settling a reservation: stat failed; trying later", "tenant", s.tenant, "reservation", r.ID, "err", err)
				continue
			}
			s.seen[r.ID] = found
		}
		if next == nil {
			next = clone(u)
		}
		i := slices.IndexFunc(next.Reserved, func(x Reserved) bool { return x.ID == r.ID })
		next.Reserved = slices.Delete(next.Reserved, i, i+1)
		if found {
			apply(next, r)
		}
		n++
		s.l.log.Info("settled an expired reservation", "tenant", s.tenant, "reservation", r.ID, "kind", r.Kind, "committed", found)
	}
	if next == nil {
		return u, 0
	}
	return next, n
}

// FormatSize prints a byte count in IEC units with two decimals ("1.00 GiB",
// "16.00 MiB", "512 B"), as quota messages do.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		if v < unit || u == "PiB" {
			return fmt.Sprintf("%.2f %s", v, u)
		}
	}
	return ""
}

// TenantInfo is a tenant with its usage, as GET /v1/tenant and `cofferd
// tenant show --json` give it.
func (l *Ledger) TenantInfo(ctx context.Context, t *registry.Tenant) (*vaultapi.TenantInfo, error) {
	u, err := l.Usage(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	return &vaultapi.TenantInfo{ID: t.ID, Name: t.Name, State: t.State, SuspendedAt: t.SuspendedAt, Reason: t.Reason,
		Quota: t.Quota, QuotaUnlimited: t.Quota == 0, Usage: u.Info(), Escrow: t.Escrow,
		RTOSeconds: t.RTO.Seconds()}, nil
}
