package maint

import (
	"maps"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// GCVersion is the version of GCState this code writes.
const GCVersion = 1

// DefaultGrace is the least time a pack stays marked before it is deleted.
const DefaultGrace = 24 * time.Hour

// GCState is one tenant's garbage-collection state. The vault keeps it as
// one document changed only by compare-and-swap, so marking, claiming by a
// new receipt and condemning never interleave wrongly, whatever the
// number of replicas.
//
// A pack's life after its last receipt is gone: it is Marked (with the
// time); a receipt that needs it before it is condemned takes it back
// (Claim); after the grace, and when no upload session that began before
// the mark is still alive, it is condemned (Deleting, with the size the
// ledger must forget and the earliest time it may be deleted: when its
// object lock ends); once deleted and forgotten by the ledger it becomes a
// tombstone (Deleted) for TombstoneTTL, so agents stop deduplicating
// against it and a late receipt that names it is refused.
type GCState struct {
	Rev      int64                `json:"rev"`
	Version  int                  `json:"version"`
	Marked   map[string]time.Time `json:"marked,omitempty"`
	Deleting map[string]Doomed    `json:"deleting,omitempty"`
	Deleted  map[string]time.Time `json:"deleted,omitempty"`
	Sessions map[string]Session   `json:"sessions,omitempty"`
	// Pruning are the receipts (by object name) retention is removing,
	// with their snapshots: recorded before anything is deleted, so a
	// killed prune finishes the same batch.
	Pruning map[string]Pruned `json:"pruning,omitempty"`
	LastRun time.Time         `json:"last_run,omitzero"`
}

// Pruned is a snapshot retention removes, and what the ledger counted for
// it and its receipt.
type Pruned struct {
	Snapshot string `json:"snapshot"` // its ID
	Batch    string `json:"batch"`
	Objects  int64  `json:"objects"` // stored objects: the receipt, and the snapshot if it was there
	Bytes    int64  `json:"bytes"`
	Logical  int64  `json:"logical"` // reported by the agent: the disks' sizes
	Data     int64  `json:"data"`
}

// Doomed is a condemned pack.
type Doomed struct {
	Size      int64     `json:"size"`
	Condemned time.Time `json:"condemned"`
	NotBefore time.Time `json:"not_before,omitzero"` // its object lock ends then
	// Batch names the deletion batch it was put in, once it was.
	Batch string `json:"batch,omitempty"`
}

// Session is an agent's upload session: packs marked after it began may
// still be named by its receipts while it lives.
type Session struct {
	Started time.Time `json:"started"`
	Seen    time.Time `json:"seen"`
}

// GCParams are the rules of one run.
type GCParams struct {
	Now   time.Time
	Grace time.Duration // at least DefaultGrace unless a test says otherwise
	// SessionTTL is how long a session lives without a heartbeat.
	SessionTTL time.Duration
	// TombstoneTTL is how long a deleted pack is remembered.
	TombstoneTTL time.Duration
}

// PackInfo is one pack as the store lists it.
type PackInfo struct {
	ID      string // 64 hex
	Size    int64
	ModTime time.Time
}

// GCPlan is what one run decided.
type GCPlan struct {
	Needed    int      `json:"needed"`    // packs some receipt needs
	Young     int      `json:"young"`     // unneeded packs younger than the grace, left alone
	NewMarks  []string `json:"new_marks"` // marked by this run
	Unmarked  []string `json:"unmarked"`  // marked before, needed again (or gone)
	Waiting   int      `json:"waiting"`   // marked, still inside the grace or held by a session
	Condemned []string `json:"condemned"` // moved to Deleting by this run
}

// Plan applies one run to st (which it does not change) and returns the
// next state. needed is every pack a receipt names; packs is the store's
// listing. A pack younger than the grace is never marked, so a backup
// shorter than the grace needs no session at all.
func Plan(st *GCState, needed map[string]bool, packs []PackInfo, p GCParams) (*GCState, GCPlan) {
	next := st.clone()
	var plan GCPlan
	exists := make(map[string]PackInfo, len(packs))
	for _, pk := range packs {
		exists[pk.ID] = pk
	}
	for id := range next.Marked {
		if needed[id] {
			plan.Unmarked = append(plan.Unmarked, id)
			delete(next.Marked, id)
		} else if _, ok := exists[id]; !ok {
			delete(next.Marked, id)
		}
	}
	next.expire(p)
	oldestLive := next.oldestLiveSession(p)
	for _, pk := range packs {
		if needed[pk.ID] {
			plan.Needed++
			continue
		}
		if _, ok := next.Deleting[pk.ID]; ok {
			continue
		}
		m, marked := next.Marked[pk.ID]
		switch {
		case !marked && p.Now.Sub(pk.ModTime) < p.Grace:
			plan.Young++
		case !marked:
			next.Marked[pk.ID] = p.Now
			plan.NewMarks = append(plan.NewMarks, pk.ID)
		case p.Now.Sub(m) >= p.Grace && (oldestLive.IsZero() || oldestLive.After(m)):
			delete(next.Marked, pk.ID)
			next.Deleting[pk.ID] = Doomed{Size: pk.Size, Condemned: p.Now}
			plan.Condemned = append(plan.Condemned, pk.ID)
		default:
			plan.Waiting++
		}
	}
	next.LastRun = p.Now
	sortPlan(&plan)
	return next, plan
}

// Claim is what storing a receipt does to the state: the packs it names
// that are marked are taken back; if any is condemned or deleted, nothing
// changes and the rejection names them (the agent stops deduplicating
// against them and backs up again). It returns st itself when nothing
// changes.
func Claim(st *GCState, packs []string) (*GCState, *vaultapi.ReceiptRejection) {
	if st == nil {
		return nil, nil
	}
	var rej vaultapi.ReceiptRejection
	var back []string
	for _, id := range packs {
		_, doomed := st.Deleting[id]
		_, gone := st.Deleted[id]
		switch {
		case doomed || gone:
			rej.Deleting = append(rej.Deleting, id)
		case !st.Marked[id].IsZero():
			back = append(back, id)
		}
	}
	if len(rej.Deleting) > 0 {
		return st, &rej
	}
	if len(back) == 0 {
		return st, nil
	}
	next := st.clone()
	for _, id := range back {
		delete(next.Marked, id)
	}
	return next, nil
}

// Unusable lists the packs an agent must not deduplicate against: marked,
// condemned or deleted.
func (st *GCState) Unusable() []string {
	if st == nil {
		return nil
	}
	out := slices.Collect(maps.Keys(st.Marked))
	out = slices.AppendSeq(out, maps.Keys(st.Deleting))
	out = slices.AppendSeq(out, maps.Keys(st.Deleted))
	slices.Sort(out)
	return out
}

// Forgotten moves a deleted pack from Deleting to the tombstones.
func (st *GCState) Forgotten(id string, at time.Time) *GCState {
	if _, ok := st.Deleting[id]; !ok {
		return st
	}
	next := st.clone()
	delete(next.Deleting, id)
	next.Deleted[id] = at
	return next
}

// expire drops tombstones and sessions past their time.
func (st *GCState) expire(p GCParams) {
	for id, at := range st.Deleted {
		if p.TombstoneTTL > 0 && p.Now.Sub(at) > p.TombstoneTTL {
			delete(st.Deleted, id)
		}
	}
	for id, s := range st.Sessions {
		if p.SessionTTL > 0 && p.Now.Sub(s.Seen) > p.SessionTTL {
			delete(st.Sessions, id)
		}
	}
}

// oldestLiveSession is the start of the oldest session still alive, or
// the zero time.
func (st *GCState) oldestLiveSession(p GCParams) time.Time {
	var oldest time.Time
	for _, s := range st.Sessions {
		if p.SessionTTL > 0 && p.Now.Sub(s.Seen) > p.SessionTTL {
			continue
		}
		if oldest.IsZero() || s.Started.Before(oldest) {
			oldest = s.Started
		}
	}
	return oldest
}

func (st *GCState) clone() *GCState {
	n := &GCState{Version: GCVersion, Marked: map[string]time.Time{}, Deleting: map[string]Doomed{},
		Deleted: map[string]time.Time{}, Sessions: map[string]Session{}}
	if st == nil {
		return n
	}
	n.Rev, n.LastRun = st.Rev, st.LastRun
	maps.Copy(n.Marked, st.Marked)
	maps.Copy(n.Deleting, st.Deleting)
	maps.Copy(n.Deleted, st.Deleted)
	maps.Copy(n.Sessions, st.Sessions)
	if len(st.Pruning) > 0 {
		n.Pruning = maps.Clone(st.Pruning)
	}
	return n
}

func sortPlan(p *GCPlan) {
	slices.Sort(p.NewMarks)
	slices.Sort(p.Unmarked)
	slices.Sort(p.Condemned)
}

// Begin records an upload session that starts now.
func (st *GCState) Begin(id string, now time.Time) *GCState {
	next := st.clone()
	next.Sessions[id] = Session{Started: now, Seen: now}
	return next
}

// Beat records that session id is alive now; an unknown (expired) session
// is an error for the caller to report: its packs may be gone.
func (st *GCState) Beat(id string, now time.Time) (*GCState, bool) {
	if st == nil {
		return nil, false
	}
	s, ok := st.Sessions[id]
	if !ok {
		return st, false
	}
	next := st.clone()
	s.Seen = now
	next.Sessions[id] = s
	return next, true
}

// End forgets session id.
func (st *GCState) End(id string) *GCState {
	if st == nil {
		return nil
	}
	if _, ok := st.Sessions[id]; !ok {
		return st
	}
	next := st.clone()
	delete(next.Sessions, id)
	return next
}

// Batch puts the condemned packs ids into the deletion batch name.
func (st *GCState) Batch(ids []string, name string) *GCState {
	next := st.clone()
	for _, id := range ids {
		if dm, ok := next.Deleting[id]; ok {
			dm.Batch = name
			next.Deleting[id] = dm
		}
	}
	return next
}

// Batches lists the deletion batches in progress, sorted.
func (st *GCState) Batches() []string {
	seen := map[string]bool{}
	var out []string
	for _, dm := range st.Deleting {
		if dm.Batch != "" && !seen[dm.Batch] {
			seen[dm.Batch] = true
			out = append(out, dm.Batch)
		}
	}
	slices.Sort(out)
	return out
}

// InBatch lists the packs of a deletion batch, sorted.
func (st *GCState) InBatch(name string) []string {
	var out []string
	for id, dm := range st.Deleting {
		if dm.Batch == name {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Postpone sets when condemned pack id may be deleted (its object lock
// ends then), and takes it out of any batch.
func (st *GCState) Postpone(id string, until time.Time) *GCState {
	dm, ok := st.Deleting[id]
	if !ok {
		return st
	}
	next := st.clone()
	dm.NotBefore, dm.Batch = until, ""
	next.Deleting[id] = dm
	return next
}

// StartPrune records the receipts retention removes as one batch.
func (st *GCState) StartPrune(items map[string]Pruned) *GCState {
	next := st.clone()
	if next.Pruning == nil {
		next.Pruning = map[string]Pruned{}
	}
	maps.Copy(next.Pruning, items)
	return next
}

// PruneDone forgets a removal batch once it is done.
func (st *GCState) PruneDone(batch string) *GCState {
	next := st.clone()
	for name, p := range next.Pruning {
		if p.Batch == batch {
			delete(next.Pruning, name)
		}
	}
	return next
}

// PruningOf reports whether retention is removing the receipt name.
func (st *GCState) PruningOf(name string) (Pruned, bool) {
	if st == nil {
		return Pruned{}, false
	}
	p, ok := st.Pruning[name]
	return p, ok
}
