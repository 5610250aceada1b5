package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// Seed import (cofferd seed import): a seed shipped on a disk goes into its
// tenant's space. Every step refuses before anything of the tenant's is
// written when the seed is not the tenant's, does not verify, was imported
// already, is damaged beyond its parity, or would exceed the quota. The
// upload reserves each object in the ledger like an HTTP upload, tagged
// with the import's job, so a run killed at any point leaves reservations
// the next run settles at once (ledger.SettleJob): usage stays exact.

// DefaultImportWorkers is how many objects an import uploads at once.
const DefaultImportWorkers = 4

// Import phases, as ImportProgress.Phase names them.
const (
	PhaseCheck  = "check"
	PhaseRepair = "repair"
	PhaseUpload = "upload"
)

// Lease timing: a killed import holds the lease at most importLeaseTTL;
// a running one renews it every importLeaseRenew (a variable for tests).
const importLeaseTTL = 2 * time.Minute

var importLeaseRenew = 30 * time.Second

// ImportOptions are the inputs of ImportSeed.
type ImportOptions struct {
	// Data holds tenants' objects at ledger.ObjectKey(tenant, name); its
	// Put may read a source more than once (a retry layer is welcome).
	Data store.Store
	// Meta holds the vault's documents (registered manifests); Swap is
	// its compare-and-swap (seed book, lease, GC state).
	Meta   store.Store
	Swap   store.Swapper
	Ledger *ledger.Ledger
	Tenant *registry.Tenant
	// Dir is the seed's directory (the one export wrote, or its
	// coffer-seed folder).
	Dir string
	// Workers upload (and hash) files at once; 0: DefaultImportWorkers.
	Workers int
	// WorkDir receives files rebuilt from parity.
	WorkDir string
	Clock   clock.Clock
	// Holder names this run in the lease (default: host and a random id).
	Holder   string
	Progress ImportProgress
	Log      *slog.Logger
}

// ImportProgress receives an import's progress; any field may be nil.
type ImportProgress struct {
	// Phase is called as each pass begins (PhaseCheck: hashing every
	// file; PhaseRepair: rebuilding damaged objects, bytes unknown (0);
	// PhaseUpload: the objects not in the vault) with its files and bytes.
	Phase func(name string, files int, bytes int64)
	// Done is called, from several goroutines, with the bytes of each
	// file hashed or uploaded.
	Done func(bytes int64)
}

func (p ImportProgress) phase(name string, files int, bytes int64) {
	if p.Phase != nil {
		p.Phase(name, files, bytes)
	}
}

func (p ImportProgress) done(n int64) {
	if p.Done != nil {
		p.Done(n)
	}
}

// ErrSeedImported is wrapped by the error ImportSeed returns for a seed
// the vault imported already.
var ErrSeedImported = errors.New("seed imported already")

type seedImportedError struct{ msg string }

func (e *seedImportedError) Error() string        { return e.msg }
func (e *seedImportedError) Is(target error) bool { return target == ErrSeedImported }

// ImportJob names the lease and the ledger tag of a tenant's seed import.
func ImportJob(tenantID string) string { return "seed-import-" + tenantID }

// ImportSeed imports the seed in o.Dir into o.Tenant's space: it verifies
// the seed (tenant, signature), refuses one imported already, takes the
// tenant's import lease, hashes every file, repairs damaged ones from
// parity, settles what a killed run left in the ledger, checks the quota,
// registers the seed if its agent never could, uploads every object the
// vault lacks (packs, index files, receipts, snapshots) and marks the seed
// imported with the report it returns.
func ImportSeed(ctx context.Context, o ImportOptions) (*vaultapi.SeedReport, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.Clock = clock.Or(o.Clock)
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := openTenantSeed(o.Tenant, o.Dir)
	if err != nil {
		return nil, err
	}
	book, err := LoadSeedBook(ctx, o.Swap, o.Tenant.ID)
	if err != nil {
		return nil, err
	}
	if err := importRefusal(o.Tenant, book.Find(s.Manifest.ID)); err != nil {
		return nil, err
	}
	lctx, release, err := takeImportLease(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer release()
	return newSeedImport(&o, s).run(lctx)
}

func (o *ImportOptions) validate() error {
	switch {
	case o.Data == nil || o.Meta == nil || o.Swap == nil || o.Ledger == nil:
		return errors.New("seed import: the vault's stores and ledger are required")
	case o.Tenant == nil || !vaultapi.ValidTenantID(o.Tenant.ID):
		return errors.New("seed import: a tenant is required")
	case o.Dir == "":
		return errors.New("seed import: give the seed's directory")
	case o.Workers < 0 || o.Workers > 256:
		return fmt.Errorf("seed import: %d workers: give 1 to 256", o.Workers)
	}
	if o.Workers == 0 {
		o.Workers = DefaultImportWorkers
	}
	return nil
}

// openTenantSeed opens the seed in dir and checks that it is t's and that
// t's signing key signed it (the second copy of the manifest if the first
// does not verify). Errors are *vaultapi.Error (CodeBadSeed,
// CodeNoSigningKey) naming the seed and the tenant.
func openTenantSeed(t *registry.Tenant, dir string) (*seed.Seed, error) {
	s, err := seed.Open(dir)
	if err != nil {
		return nil, vaultapi.Errorf(vaultapi.CodeBadSeed, "%v; nothing was imported", err)
	}
	if t.SigningKey == "" {
		_, err := ParseTenantSeed(t, s.Body, s.Sig) // another tenant's, or no key
		return nil, err
	}
	if err := s.Verify(t.SigningKey); err != nil {
		if s.Manifest.Tenant != t.ID {
			_, err := ParseTenantSeed(t, s.Body, s.Sig) // says whose it is
			return nil, err
		}
		return nil, vaultapi.Errorf(vaultapi.CodeBadSeed, "seed %s in %s: %v; nothing was imported", s.Manifest.ID[:12], s.Root, err)
	}
	if _, err := ParseTenantSeed(t, s.Body, s.Sig); err != nil { // the copy that verified
		return nil, err
	}
	return s, nil
}

// importRefusal is why seed info (nil: not registered) is not imported:
// it was imported already, or cancelled; nil when it may be.
func importRefusal(t *registry.Tenant, info *vaultapi.SeedInfo) error {
	switch {
	case info == nil:
		return nil
	case info.State == vaultapi.SeedImported:
		return importedError(t, info)
	case info.State == vaultapi.SeedCancelled:
		return SeedCancelledError(info)
	}
	return nil
}

func importedError(t *registry.Tenant, info *vaultapi.SeedInfo) error {
	when := "an earlier run"
	if info.Report != nil {
		when = info.Report.Finished.UTC().Format(time.DateTime) + " UTC"
	}
	return &seedImportedError{msg: fmt.Sprintf("seed %s of tenant %q was imported on %s; nothing to do (cofferd seed show --tenant %s %s shows its report)",
		info.ID[:12], t.Name, when, t.Name, info.ID)}
}

// takeImportLease takes the tenant's import lease and keeps renewing it;
// the returned context ends if the lease is lost. release stops renewing
// and gives the lease up.
func takeImportLease(ctx context.Context, o *ImportOptions) (context.Context, func(), error) {
	job := ImportJob(o.Tenant.ID)
	if o.Holder == "" {
		host, _ := os.Hostname()
		id, err := vaultapi.NewID()
		if err != nil {
			return nil, nil, err
		}
		o.Holder = host + "/" + id
	}
	ok, err := TakeLease(ctx, o.Swap, job, o.Holder, o.Clock.Now(), importLeaseTTL)
	if err != nil {
		return nil, nil, fmt.Errorf("taking the seed import lease of tenant %q: %w", o.Tenant.Name, err)
	}
	if !ok {
		return nil, nil, leaseHeldError(ctx, o, job)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		renewImportLease(lctx, cancel, o, job)
	}()
	release := func() {
		cancel(nil)
		<-stopped
		rctx, done := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer done()
		if err := ReleaseLease(rctx, o.Swap, job, o.Holder); err != nil {
			o.Log.Warn("releasing the seed import lease failed; it expires by itself", "tenant", o.Tenant.ID, "err", err)
		}
	}
	return lctx, release, nil
}

// renewImportLease renews the lease until ctx ends. Another holder
// taking it, or failing to renew it until it would have expired, cancels
// ctx with the reason; a store hiccup in between is retried.
func renewImportLease(ctx context.Context, cancel context.CancelCauseFunc, o *ImportOptions, job string) {
	t := time.NewTicker(importLeaseRenew)
	defer t.Stop()
	renewed := o.Clock.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := o.Clock.Now()
		ok, err := TakeLease(ctx, o.Swap, job, o.Holder, now, importLeaseTTL)
		switch {
		case ctx.Err() != nil:
			return
		case ok:
			renewed = now
		case err == nil:
			cancel(fmt.Errorf("the seed import of tenant %q lost its lease to another import; stopped", o.Tenant.Name))
			return
		case now.Sub(renewed) >= importLeaseTTL-importLeaseRenew:
			cancel(fmt.Errorf("the seed import of tenant %q could not renew its lease: %w; stopped (run it again)", o.Tenant.Name, err))
			return
		default:
			o.Log.Warn("renewing the seed import lease failed; retrying", "tenant", o.Tenant.ID, "err", err)
		}
	}
}

func leaseHeldError(ctx context.Context, o *ImportOptions, job string) error {
	until := ""
	if b, _, err := o.Swap.ReadVersioned(ctx, leaseKey(job), 4<<10); err == nil {
		var l Lease
		if json.Unmarshal(b, &l) == nil && !l.Expires.IsZero() {
			until = " (its lease runs until " + l.Expires.UTC().Format(time.DateTime) + " UTC)"
		}
	}
	return fmt.Errorf("another seed import for tenant %q is running%s: wait for it; if it was killed, run this again once its lease has expired",
		o.Tenant.Name, until)
}

// seedImport is one run of ImportSeed, under the lease.
type seedImport struct {
	o          *ImportOptions
	s          *seed.Seed
	m          *seed.Manifest
	registered bool
	job        string
	rep        *vaultapi.SeedReport
	watch      clock.Stopwatch
}

func newSeedImport(o *ImportOptions, s *seed.Seed) *seedImport {
	m := s.Manifest
	return &seedImport{o: o, s: s, m: m, job: ImportJob(o.Tenant.ID), watch: clock.Start(),
		rep: &vaultapi.SeedReport{Seed: m.ID, Tenant: o.Tenant.ID, Started: o.Clock.Now().UTC(), Objects: len(m.Objects),
			Bytes: m.Bytes(), Repaired: []vaultapi.RepairedFile{}, ManifestCopy: s.UsedCopy,
			Signer: crypto.SigningKeyFingerprint(m.Signer)}}
}

func (im *seedImport) run(ctx context.Context) (*vaultapi.SeedReport, error) {
	// Again under the lease: a run that held it may have finished.
	book, err := LoadSeedBook(ctx, im.o.Swap, im.o.Tenant.ID)
	if err != nil {
		return nil, err
	}
	if err := importRefusal(im.o.Tenant, book.Find(im.m.ID)); err != nil {
		return nil, err
	}
	im.registered = book.Find(im.m.ID) != nil
	if err := im.matchRegistered(ctx); err != nil {
		return nil, err
	}
	if err := im.checkAndRepair(ctx); err != nil {
		return nil, im.stopped(ctx, err)
	}
	if _, err := im.o.Ledger.SettleJob(ctx, im.o.Tenant.ID, im.job); err != nil {
		return nil, im.stopped(ctx, err)
	}
	todo, err := im.plan(ctx)
	if err != nil {
		return nil, im.stopped(ctx, err)
	}
	if err := im.checkQuota(ctx, todo); err != nil {
		return nil, err
	}
	if !im.registered {
		if _, err := RegisterSeed(ctx, im.o.Swap, im.o.Meta, im.o.Tenant, im.s.Body, im.s.Sig, im.o.Clock.Now()); err != nil {
			return nil, im.stopped(ctx, err)
		}
	}
	if err := im.upload(ctx, todo); err != nil {
		return nil, im.stopped(ctx, err)
	}
	return im.finish(ctx)
}

// matchRegistered checks that a seed the agent registered holds every
// object its registered manifest lists: the vault judges the waiting
// snapshots by that manifest, so marking the seed imported without one of
// them would make a snapshot look restorable that is not.
func (im *seedImport) matchRegistered(ctx context.Context) error {
	if !im.registered {
		return nil
	}
	reg, body, _, err := SeedManifest(ctx, im.o.Meta, im.o.Tenant.ID, im.m.ID)
	if err != nil {
		return err
	}
	if bytes.Equal(body, im.s.Body) {
		return nil
	}
	have := make(map[string]string, len(im.m.Objects))
	for _, f := range im.m.Objects {
		have[f.Name] = f.SHA256
	}
	var lacking []string
	for _, f := range reg.Objects {
		if have[f.Name] != f.SHA256 {
			lacking = append(lacking, f.Name)
		}
	}
	if len(lacking) > 0 {
		return vaultapi.Errorf(vaultapi.CodeBadSeed, "the seed on the disk lacks %d objects its manifest listed when it was registered (%s): "+
			"nothing was imported; import the disk the export last finished", len(lacking), firstNames(lacking))
	}
	return nil
}

// stopped prefers the reason the lease was lost over the error it caused.
func (im *seedImport) stopped(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && ctx.Err() != nil {
		return cause
	}
	return err
}

// finish checks that every object is in the vault with its size and marks
// the seed imported.
func (im *seedImport) finish(ctx context.Context) (*vaultapi.SeedReport, error) {
	have, err := im.vaultObjects(ctx)
	if err != nil {
		return nil, im.stopped(ctx, err)
	}
	var missing []string
	for _, f := range im.m.Objects {
		if size, ok := have[f.Name]; !ok || size != f.Size {
			missing = append(missing, f.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("after the upload, tenant %q's space lacks %d of the seed's objects (%s): run the import again",
			im.o.Tenant.Name, len(missing), firstNames(missing))
	}
	r := im.rep
	r.Finished = im.o.Clock.Now().UTC()
	r.Seconds = im.watch.Elapsed().Seconds()
	r.Clean = true
	if _, err := MarkSeedImported(ctx, im.o.Swap, im.o.Tenant.ID, im.m.ID, r); err != nil {
		return nil, im.stopped(ctx, fmt.Errorf("marking seed %s imported: %w", im.m.ID[:12], err))
	}
	im.removeRebuilt()
	im.o.Log.Info("seed imported", "tenant", im.o.Tenant.ID, "seed", im.m.ID, "uploaded", r.Uploaded, "present", r.Present,
		"repaired", len(r.Repaired))
	return r, nil
}

// removeRebuilt removes the files rebuilt from parity once the seed is in.
func (im *seedImport) removeRebuilt() {
	for i, f := range im.m.Objects {
		if p := im.s.Path(i); p != seed.FilePath(im.s.Root, f) {
			if err := os.Remove(p); err != nil {
				im.o.Log.Warn("removing a rebuilt file failed", "path", p, "err", err)
			}
		}
	}
}

// firstNames lists up to five names for a message.
func firstNames(names []string) string {
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}
