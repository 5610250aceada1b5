package jobs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
)

// checkAndRepair hashes every file of the seed and rebuilds the damaged
// ones from parity into the work dir; damage beyond the parity refuses
// the import, naming the files.
func (im *seedImport) checkAndRepair(ctx context.Context) error {
	files := im.m.Files()
	var total int64
	for _, f := range files {
		total += f.Size
	}
	im.o.Progress.phase(PhaseCheck, len(files), total)
	damaged, err := im.s.Check(ctx, seed.CheckOptions{Workers: im.o.Workers, Progress: im.o.Progress.Done})
	if err != nil {
		return fmt.Errorf("checking seed %s: %w", im.m.ID[:12], err)
	}
	if len(damaged) == 0 {
		return nil
	}
	return im.repair(ctx, damaged)
}

// repair rebuilds the damaged objects from parity (damaged parity files
// need nothing) and records every damaged file in the report. Damage
// beyond the parity is a *seed.Unrepairable naming the files.
func (im *seedImport) repair(ctx context.Context, damaged []seed.Damaged) error {
	objects := 0
	for _, d := range damaged {
		rebuilt := d.Index < len(im.m.Objects)
		if rebuilt {
			objects++
		}
		im.rep.Repaired = append(im.rep.Repaired, vaultapi.RepairedFile{Name: d.Name, Problem: d.Problem, Rebuilt: rebuilt})
	}
	im.o.Log.Warn("seed files damaged", "seed", im.m.ID, "files", len(damaged), "objects", objects)
	if objects == 0 {
		return nil
	}
	if im.o.WorkDir == "" {
		return fmt.Errorf("seed %s has %d damaged objects to rebuild from parity: give a work directory for them (--work-dir)", im.m.ID[:12], objects)
	}
	im.o.Progress.phase(PhaseRepair, objects, 0)
	err := im.s.Repair(ctx, damaged, im.o.WorkDir, seed.RepairOptions{Progress: im.o.Progress.Done})
	if err != nil {
		return fmt.Errorf("seed %s of tenant %q: %w", im.m.ID[:12], im.o.Tenant.Name, err)
	}
	return nil
}

// importObject is an object of the seed the vault lacks.
type importObject struct {
	seed.File
	index int // in the manifest's Objects
	kind  vaultapi.Kind
}

// importOrder ranks kinds in upload order: a receipt only after the packs
// it names, a snapshot only after its receipt.
func importOrder(k vaultapi.Kind) int {
	switch k {
	case vaultapi.KindPack:
		return 0
	case vaultapi.KindIndex:
		return 1
	case vaultapi.KindReceipt:
		return 2
	}
	return 3
}

// vaultObjects lists the tenant's objects with their sizes.
func (im *seedImport) vaultObjects(ctx context.Context) (map[string]int64, error) {
	prefix := ledger.ObjectKey(im.o.Tenant.ID, "")
	have := map[string]int64{}
	err := im.o.Data.List(ctx, prefix, func(i store.Info) error {
		have[strings.TrimPrefix(i.Name, prefix)] = i.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing tenant %q's objects: %w", im.o.Tenant.Name, err)
	}
	return have, nil
}

// plan returns the objects the vault lacks in upload order, counting the
// rest as present. An object the vault holds with another size is
// refused: the vault's copy is damaged.
func (im *seedImport) plan(ctx context.Context) ([]importObject, error) {
	have, err := im.vaultObjects(ctx)
	if err != nil {
		return nil, err
	}
	var todo []importObject
	var wrong []string
	for i, f := range im.m.Objects {
		size, ok := have[f.Name]
		switch {
		case !ok:
			k, _ := vaultapi.ParseRepoName(f.Name) // Parse checked every name
			todo = append(todo, importObject{File: f, index: i, kind: k})
		case size == f.Size:
			im.rep.Present++
		default:
			wrong = append(wrong, fmt.Sprintf("%s (%d bytes in the vault, %d in the seed)", f.Name, size, f.Size))
		}
	}
	if len(wrong) > 0 {
		return nil, fmt.Errorf("tenant %q's space holds %d of the seed's objects with another size: %s; nothing was imported: "+
			"run cofferd check --tenant %s and remove the damaged objects, then import again",
			im.o.Tenant.Name, len(wrong), firstNames(wrong), im.o.Tenant.Name)
	}
	slices.SortStableFunc(todo, func(a, b importObject) int { return cmp.Compare(importOrder(a.kind), importOrder(b.kind)) })
	return todo, nil
}

// checkQuota refuses, before any upload, an import whose objects do not
// fit in the tenant's quota.
func (im *seedImport) checkQuota(ctx context.Context, todo []importObject) error {
	t := im.o.Tenant
	if t.Quota <= 0 {
		return nil
	}
	var need int64
	for _, o := range todo {
		need += o.Size
	}
	u, err := im.o.Ledger.Usage(ctx, t.ID)
	if err != nil {
		return err
	}
	used := u.StoredBytes + u.ReservedBytes()
	if used+need <= t.Quota {
		return nil
	}
	return &store.QuotaError{Msg: fmt.Sprintf("tenant %q: seed %s needs %s more but the quota %s leaves %s (stored %s, in flight %s); "+
		"nothing was imported: raise the quota (cofferd tenant set-quota), then import again",
		t.Name, im.m.ID[:12], ledger.FormatSize(need), ledger.FormatSize(t.Quota), ledger.FormatSize(max(0, t.Quota-used)),
		ledger.FormatSize(u.StoredBytes), ledger.FormatSize(u.ReservedBytes()))}
}

// upload stores todo, kind by kind in import order, each kind with
// o.Workers at once.
func (im *seedImport) upload(ctx context.Context, todo []importObject) error {
	var bytes int64
	for _, o := range todo {
		bytes += o.Size
	}
	im.o.Progress.phase(PhaseUpload, len(todo), bytes)
	snaps, err := im.snapshotSizes(todo)
	if err != nil {
		return err
	}
	u := &uploader{im: im, snaps: snaps}
	for len(todo) > 0 {
		n := 1
		for n < len(todo) && importOrder(todo[n].kind) == importOrder(todo[0].kind) {
			n++
		}
		if err := u.run(ctx, todo[:n]); err != nil {
			return err
		}
		todo = todo[n:]
	}
	im.rep.Uploaded, im.rep.UploadedBytes = int(u.uploaded.Load()), u.uploadedBytes.Load()
	im.rep.Present += int(u.present.Load())
	return nil
}

// snapshotSizes reads the seed's receipts for the sizes each snapshot to
// upload describes (the vault cannot decrypt a snapshot; the agent sends
// them with it, and the receipt holds the same figures).
func (im *seedImport) snapshotSizes(todo []importObject) (map[string]ledger.Meta, error) {
	if !slices.ContainsFunc(todo, func(o importObject) bool { return o.kind == vaultapi.KindSnapshot }) {
		return nil, nil
	}
	out := map[string]ledger.Meta{}
	var buf []byte
	for i, f := range im.m.Objects {
		if !strings.HasPrefix(f.Name, "receipts/") {
			continue
		}
		b, err := im.readVerified(i, &buf)
		if err != nil {
			return nil, err
		}
		rc, err := vaultapi.ParseReceipt(b)
		if err != nil {
			return nil, fmt.Errorf("seed %s: %s: %w", im.m.ID[:12], f.Name, err)
		}
		var m ledger.Meta
		for _, d := range rc.Disks {
			m.LogicalBytes += d.Size
			m.DataBytes += d.DataBytes
		}
		out[rc.Snapshot] = m
	}
	return out, nil
}

// readVerified reads object i of the seed (or its rebuilt copy) whole
// into *buf and checks its size and SHA-256 against the manifest again:
// the disk may have changed since it was hashed.
func (im *seedImport) readVerified(i int, buf *[]byte) ([]byte, error) {
	f := im.m.Objects[i]
	fh, err := os.Open(im.s.Path(i))
	if err != nil {
		return nil, fmt.Errorf("reading %s of the seed: %w; check the disk and import again", f.Name, err)
	}
	defer fh.Close()
	if int64(cap(*buf)) < f.Size+1 {
		*buf = make([]byte, f.Size+1)
	}
	b := (*buf)[:f.Size+1]
	n, err := io.ReadFull(fh, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s of the seed: %w; check the disk and import again", f.Name, err)
	}
	b = b[:n]
	sum := sha256.Sum256(b)
	if int64(n) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
		return nil, fmt.Errorf("%s of the seed changed since it was checked (now %d bytes, want %d with the manifest's SHA-256): "+
			"check the disk and import again; nothing damaged was stored", f.Name, n, f.Size)
	}
	return b, nil
}

// uploader uploads objects of one kind at once.
type uploader struct {
	im    *seedImport
	snaps map[string]ledger.Meta

	uploaded, present atomic.Int64
	uploadedBytes     atomic.Int64
}

func (u *uploader) run(ctx context.Context, todo []importObject) error {
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(u.im.o.Workers, len(todo)) {
		g.Go(func() error {
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(todo) || gctx.Err() != nil {
					return gctx.Err()
				}
				if err := u.one(gctx, todo[i], &buf); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// one stores object o with a ledger reservation, as an HTTP upload does.
func (u *uploader) one(ctx context.Context, o importObject, buf *[]byte) error {
	im := u.im
	b, err := im.readVerified(o.index, buf)
	if err != nil {
		return err
	}
	meta := ledger.Meta{Job: im.job}
	switch o.kind {
	case vaultapi.KindSnapshot:
		sm := u.snaps[vaultapi.NameDigest(o.Name)]
		meta.LogicalBytes, meta.DataBytes = sm.LogicalBytes, sm.DataBytes
	case vaultapi.KindReceipt:
		if err := im.claimReceipt(ctx, o.Name, b); err != nil {
			return err
		}
	}
	res, err := u.reserve(ctx, o, meta)
	if err != nil || res == nil {
		return err
	}
	err = im.o.Data.Put(ctx, ledger.ObjectKey(im.o.Tenant.ID, o.Name), store.Bytes(b), o.Size)
	if errors.Is(err, store.ErrExists) {
		u.settle(ctx, res, false)
		return u.exists(ctx, o)
	}
	if err != nil {
		u.settleFailed(ctx, o, res)
		return fmt.Errorf("storing %s of seed %s: %w", o.Name, im.m.ID[:12], err)
	}
	if err := u.settle(ctx, res, true); err != nil {
		return fmt.Errorf("counting %s in tenant %q's usage: %w; run the import again to settle it", o.Name, im.o.Tenant.Name, err)
	}
	u.uploaded.Add(1)
	u.uploadedBytes.Add(o.Size)
	im.o.Progress.done(o.Size)
	return nil
}

// busyTries bounds the waits for an upload of the same object through the
// HTTP API (the agent sending an index file) to end.
const busyTries = 15

// reserve reserves o's size; nil with no error means the object arrived
// meanwhile (counted present).
func (u *uploader) reserve(ctx context.Context, o importObject, meta ledger.Meta) (*ledger.Reservation, error) {
	im := u.im
	ttl := 5*time.Minute + time.Duration(o.Size/(32<<10))*time.Second
	for try := 1; ; try++ {
		res, err := im.o.Ledger.Reserve(ctx, im.o.Tenant, o.Name, o.kind, o.Size, meta, ttl)
		if !errors.Is(err, ledger.ErrBusy) {
			if errors.Is(err, store.ErrNoSpace) {
				err = fmt.Errorf("%w; the objects stored so far stay counted: import again after raising the quota", err)
			}
			return res, err
		}
		if err := u.exists(ctx, o); err == nil {
			return nil, nil
		}
		if try == busyTries {
			return nil, fmt.Errorf("another upload of %s to tenant %q is in progress; run the import again later", o.Name, im.o.Tenant.Name)
		}
		if err := im.o.Clock.Sleep(ctx, 2*time.Second); err != nil {
			return nil, err
		}
	}
}

// exists counts o present when the vault holds it with its size.
func (u *uploader) exists(ctx context.Context, o importObject) error {
	info, err := u.im.o.Data.Stat(ctx, ledger.ObjectKey(u.im.o.Tenant.ID, o.Name))
	if err != nil {
		return fmt.Errorf("checking %s in tenant %q's space: %w", o.Name, u.im.o.Tenant.Name, err)
	}
	if info.Size != o.Size {
		return fmt.Errorf("tenant %q's space holds %s with %d bytes, the seed's has %d: run cofferd check --tenant %s",
			u.im.o.Tenant.Name, o.Name, info.Size, o.Size, u.im.o.Tenant.Name)
	}
	u.present.Add(1)
	u.im.o.Progress.done(o.Size)
	return nil
}

// settle commits or releases a reservation even when ctx ended: a
// reservation left behind is settled by the next run anyway.
func (u *uploader) settle(ctx context.Context, res *ledger.Reservation, commit bool) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if commit {
		return res.Commit(sctx)
	}
	if err := res.Release(sctx); err != nil {
		u.im.o.Log.Warn("releasing a reservation failed; the next import settles it", "object", res.Name, "err", err)
	}
	return nil
}

// settleFailed settles the reservation of a Put that failed, which may
// have stored the object all the same (a reply lost, a cancel after the
// write): committed if the object is there with its size, released if it
// is not, left for the next run's SettleJob if the store cannot tell.
func (u *uploader) settleFailed(ctx context.Context, o importObject, res *ledger.Reservation) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	info, err := u.im.o.Data.Stat(sctx, ledger.ObjectKey(u.im.o.Tenant.ID, o.Name))
	switch {
	case err == nil && info.Size == o.Size:
		if err := u.settle(ctx, res, true); err != nil {
			u.im.o.Log.Warn("committing a reservation failed; the next import settles it", "object", o.Name, "err", err)
		}
	case errors.Is(err, store.ErrNotFound):
		u.settle(ctx, res, false)
	}
}

// claimReceipt does what the vault does before it stores a receipt: the
// receipt parses, and garbage collection gives back the packs it marked
// (refusing when it is deleting one).
func (im *seedImport) claimReceipt(ctx context.Context, name string, b []byte) error {
	rc, err := vaultapi.ParseReceipt(b)
	if err != nil {
		return fmt.Errorf("seed %s: %s: %w", im.m.ID[:12], name, err)
	}
	rej, err := ClaimPacks(ctx, im.o.Swap, im.o.Tenant.ID, rc.Packs)
	if err != nil {
		return err
	}
	if rej != nil {
		return fmt.Errorf("the receipt of snapshot %s names %d packs garbage collection is deleting (%s): the seed's snapshot cannot be restored whole; run the import again after the next backup",
			rc.Snapshot, len(rej.Deleting), firstNames(rej.Deleting))
	}
	return nil
}
