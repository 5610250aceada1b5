package jobs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Kinds of Problem.
const (
	// ProblemDamaged: the bytes do not hash to the object's name, or its
	// size is one no object of its kind can have.
	ProblemDamaged = "damaged"
	// ProblemMissing: an object that must exist does not (the config, an
	// object listed a moment ago, a pack a receipt needs).
	ProblemMissing = "missing"
	// ProblemUnreadable: the store failed to return the object; it is not
	// verified.
	ProblemUnreadable = "unreadable"
	// ProblemForeign: a name no Coffer agent gives, put in the store
	// around the vault (which refuses such names). A warning: it holds
	// none of the tenant's data.
	ProblemForeign = "foreign"
	// ProblemWaiting: a receipt needs packs that travel on a seed the
	// vault has not imported yet. Not an error: the snapshot waits.
	ProblemWaiting = "waiting"
	// ProblemLost: a receipt needs packs that travelled on a seed that
	// was cancelled. Not counted as an error (nothing the vault can mend:
	// the seed is declared lost), but listed: the snapshot cannot be
	// restored.
	ProblemLost = "lost"
)

// DefaultCheckWorkers is how many objects a keyless check reads at once.
const DefaultCheckWorkers = 4

// Problem is one finding of a keyless check, naming the object.
type Problem struct {
	Object  string `json:"object"`
	Kind    string `json:"kind"` // ProblemDamaged, ProblemMissing, ProblemUnreadable, ProblemForeign, ProblemWaiting or ProblemLost
	Message string `json:"message"`
}

// ReceiptChecker compares a tenant's receipts (the keyless record of each
// snapshot and the packs it needs) with the objects its repository holds.
// The vault's receipts implement it; a nil ReceiptChecker skips the step.
type ReceiptChecker interface {
	// CheckReceipts is given the tenant's repository and every object in
	// it with its size, and returns a Problem (ProblemMissing, usually)
	// for each receipt that names what is not there. Its error is for
	// failing to run at all.
	CheckReceipts(ctx context.Context, st store.Store, objects map[string]int64) ([]Problem, error)
}

// KeylessOptions select how much a keyless check reads.
type KeylessOptions struct {
	// ReadDataPercent is the share of packs (0 to 100) downloaded and
	// hashed; the rest are checked by name and size only.
	ReadDataPercent float64
	// SampleSeed picks which packs: the same seed and packs give the same
	// sample; a new seed (the command uses the date) gives another.
	SampleSeed string
	// Workers bounds parallel downloads; 0 means DefaultCheckWorkers.
	Workers int
	// MaxPackSize is the largest pack the vault accepts (cofferd serve
	// --max-object-size); 0 means vaultapi.DefaultMaxPackSize.
	MaxPackSize int64
	// Receipts, if set, checks the tenant's receipts against the objects.
	Receipts ReceiptChecker
	// ToRead, if set, is called once with the number and total size of
	// the objects to download, before any is read: a progress total.
	ToRead func(count int, size int64)
	// Read, if set, is called (from several goroutines) as each object
	// is downloaded, with its size.
	Read func(size int64)
}

// KeylessReport is what a keyless check found.
type KeylessReport struct {
	Objects         int       `json:"objects"`
	Bytes           int64     `json:"bytes"`
	Packs           int       `json:"packs"`
	PacksRead       int       `json:"packs_read"`
	ObjectsHashed   int       `json:"objects_hashed"`
	BytesRead       int64     `json:"bytes_read"`
	ReadDataPercent float64   `json:"read_data_percent"`
	SampleSeed      string    `json:"sample_seed,omitempty"`
	Empty           bool      `json:"empty"` // no object at all: the tenant's agent has not run coffer init
	ReceiptsChecked bool      `json:"receipts_checked"`
	Waiting         int       `json:"waiting"` // receipts waiting on a seed in transit (ProblemWaiting)
	Lost            int       `json:"lost"`    // receipts that needed a cancelled seed (ProblemLost)
	Problems        []Problem `json:"problems"`
}

// Errors counts the problems that fail a check (all but foreign objects
// and snapshots waiting on a seed or lost with a cancelled one).
func (r *KeylessReport) Errors() int {
	n := 0
	for _, p := range r.Problems {
		if p.Kind != ProblemForeign && p.Kind != ProblemWaiting && p.Kind != ProblemLost {
			n++
		}
	}
	return n
}

// keylessCheck is one run of CheckKeyless.
type keylessCheck struct {
	st  store.Store
	opt KeylessOptions

	mu     sync.Mutex
	report KeylessReport
	read   atomic.Int64
}

func (c *keylessCheck) problem(object, kind, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Problems = append(c.report.Problems, Problem{Object: object, Kind: kind, Message: fmt.Sprintf(format, args...)})
}

// CheckKeyless verifies the repository in st (a store rooted at the
// tenant's repos/<id>/) without its keys. Damage is reported in the
// KeylessReport; the error is for failing to run (the store cannot be
// listed, the context ended, a bad option).
func CheckKeyless(ctx context.Context, st store.Store, opt KeylessOptions) (*KeylessReport, error) {
	if math.IsNaN(opt.ReadDataPercent) || opt.ReadDataPercent < 0 || opt.ReadDataPercent > 100 {
		return nil, fmt.Errorf("read-data share %v%% is not between 0 and 100", opt.ReadDataPercent)
	}
	opt.Workers = cmp.Or(opt.Workers, DefaultCheckWorkers)
	opt.MaxPackSize = cmp.Or(opt.MaxPackSize, vaultapi.DefaultMaxPackSize)
	c := &keylessCheck{st: st, opt: opt}
	c.report.ReadDataPercent, c.report.SampleSeed = opt.ReadDataPercent, opt.SampleSeed
	objects, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.hashAll(ctx, c.toRead(objects)); err != nil {
		return nil, err
	}
	if err := c.receipts(ctx, objects); err != nil {
		return nil, err
	}
	c.report.BytesRead = c.read.Load()
	slices.SortStableFunc(c.report.Problems, func(a, b Problem) int { return cmp.Compare(a.Object, b.Object) })
	if c.report.Problems == nil {
		c.report.Problems = []Problem{}
	}
	return &c.report, nil
}

// list lists every object, reporting foreign names, impossible sizes and
// a missing config.
func (c *keylessCheck) list(ctx context.Context) ([]store.Info, error) {
	var objects []store.Info
	if err := c.st.List(ctx, "", func(i store.Info) error {
		objects = append(objects, i)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing the repository in %s: %w", c.st.Location(), err)
	}
	c.report.Objects, c.report.Empty = len(objects), len(objects) == 0
	config := false
	for _, o := range objects {
		c.report.Bytes += o.Size
		kind, err := vaultapi.ParseRepoName(o.Name)
		switch {
		case err != nil:
			c.problem(o.Name, ProblemForeign, "%s is not an object name Coffer gives (the vault refuses it), so it was put in the store around the vault; it holds none of the tenant's data: look at it, then remove it from the store", o.Name)
			continue
		case kind == vaultapi.KindConfig:
			config = true
		case kind == vaultapi.KindPack:
			c.report.Packs++
		}
		c.checkSize(o, kind)
	}
	if !config && len(objects) > 0 {
		c.problem(repo.ConfigName, ProblemMissing, "the repository has objects but no config: no agent can open it; restore the config from a copy of the store")
	}
	return objects, nil
}

// minPackSize: a pack holds at least a sealed header and its trailer.
const minPackSize = pack.TrailerSize + crypto.Overhead

// checkSize reports an object whose size its kind cannot have.
func (c *keylessCheck) checkSize(o store.Info, kind vaultapi.Kind) {
	limit := kind.MaxSize()
	if kind == vaultapi.KindPack {
		limit = c.opt.MaxPackSize
		if o.Size < minPackSize {
			c.problem(o.Name, ProblemDamaged, "pack %s is %d bytes, smaller than any pack (%d): it is truncated, and the snapshots that use it cannot be restored", o.Name, o.Size, minPackSize)
			return
		}
	}
	if o.Size > limit {
		c.problem(o.Name, ProblemDamaged, "%s is %d bytes, more than a %s can be (%d): it is not what the agent stored", o.Name, o.Size, kind, limit)
	}
}

// toRead is the objects to download: every content-named object but the
// packs, and the sampled share of packs.
func (c *keylessCheck) toRead(objects []store.Info) []store.Info {
	var small, packs []store.Info
	for _, o := range objects {
		kind, err := vaultapi.ParseRepoName(o.Name)
		switch {
		case err != nil || !kind.ContentNamed():
		case kind == vaultapi.KindPack:
			packs = append(packs, o)
		default:
			small = append(small, o)
		}
	}
	sample := SamplePacks(packs, c.opt.ReadDataPercent, c.opt.SampleSeed)
	c.report.PacksRead = len(sample)
	return append(small, sample...)
}

// SamplePacks picks ceil(percent% of len(packs)) packs, deterministically
// from seed and their names but spread like a random draw: the packs whose
// SHA-256(seed, name) sort first. percent 100 picks them all, 0 none.
func SamplePacks(packs []store.Info, percent float64, seed string) []store.Info {
	n := int(math.Ceil(percent / 100 * float64(len(packs))))
	n = min(max(n, 0), len(packs))
	if n == len(packs) {
		return slices.Clone(packs)
	}
	type ranked struct {
		rank uint64
		info store.Info
	}
	rs := make([]ranked, len(packs))
	for i, p := range packs {
		sum := sha256.Sum256([]byte(seed + "\x00" + p.Name))
		rs[i] = ranked{binary.BigEndian.Uint64(sum[:8]), p}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.info.Name, b.info.Name))
	})
	out := make([]store.Info, n)
	for i := range out {
		out[i] = rs[i].info
	}
	return out
}

// hashAll downloads objects, Workers at a time, and checks each one's
// SHA-256 against its name.
func (c *keylessCheck) hashAll(ctx context.Context, objects []store.Info) error {
	if c.opt.ToRead != nil {
		var total int64
		for _, o := range objects {
			total += o.Size
		}
		c.opt.ToRead(len(objects), total)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Workers)
	for _, o := range objects {
		g.Go(func() error {
			c.hashOne(gctx, o)
			if c.opt.Read != nil {
				c.opt.Read(o.Size)
			}
			return nil
		})
	}
	_ = g.Wait()
	c.report.ObjectsHashed = len(objects)
	return ctx.Err()
}

// hashOne streams one object through SHA-256 and compares it with the name.
func (c *keylessCheck) hashOne(ctx context.Context, o store.Info) {
	var sum []byte
	var n int64
	err := c.st.Get(ctx, o.Name, 0, -1, func(r io.Reader) error {
		h := sha256.New()
		m, err := io.Copy(h, r)
		sum, n = h.Sum(nil), m
		return err
	})
	c.read.Add(n)
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, store.ErrNotFound):
		c.problem(o.Name, ProblemMissing, "%s was listed but is gone: it was deleted while the check ran, or the store lost it; run the check again", o.Name)
	case err != nil:
		c.problem(o.Name, ProblemUnreadable, "reading %s: %v; it is not verified: run the check again once the store answers", o.Name, err)
	case hex.EncodeToString(sum) != vaultapi.NameDigest(o.Name):
		c.problem(o.Name, ProblemDamaged, "%s does not match its name (its %d bytes hash to SHA-256 %x): the object is damaged: restore it from a copy of the store (cofferd check --escrow-key --read-data names the chunks it loses)", o.Name, n, sum)
	}
}

// receipts runs the receipt hook, if any.
func (c *keylessCheck) receipts(ctx context.Context, objects []store.Info) error {
	if c.opt.Receipts == nil {
		return nil
	}
	sizes := make(map[string]int64, len(objects))
	for _, o := range objects {
		sizes[o.Name] = o.Size
	}
	ps, err := c.opt.Receipts.CheckReceipts(ctx, c.st, sizes)
	if err != nil {
		return fmt.Errorf("checking receipts: %w", err)
	}
	c.report.ReceiptsChecked = true
	c.mu.Lock()
	c.report.Problems = append(c.report.Problems, ps...)
	for _, p := range ps {
		switch p.Kind {
		case ProblemWaiting:
			c.report.Waiting++
		case ProblemLost:
			c.report.Lost++
		}
	}
	c.mu.Unlock()
	return nil
}

// ParsePercent reads a --read-data share: "10", "10%" or "2.5%", above 0
// and at most 100.
func ParsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
		return 0, fmt.Errorf("--read-data=%q: give a share of the packs above 0 and at most 100, such as 10%% (or --read-data alone for all)", s)
	}
	return v, nil
}
