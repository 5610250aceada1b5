package seed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/parity"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// ParityDir holds the parity files inside the seed's root.
const ParityDir = "parity"

// FinishOptions tune Finish.
type FinishOptions struct {
	// Share is the share of the seed's files (parity included) that may be
	// lost or damaged in any combination (DefaultParityShare when zero).
	Share float64
	// Workers hash files concurrently (default 4).
	Workers int
	// MemoryBudget bounds the parity encoder's buffers (internal/parity);
	// 0 sizes them by the number of files (ParityBudget).
	MemoryBudget int64
	// Progress, when set, gets the bytes hashed or encoded as they go.
	Progress func(n int64)
}

// Finish turns the objects an export wrote under root/objects into a seed:
// it hashes every object, writes the Reed-Solomon parity files under
// root/parity, and writes the signed manifest (both copies). m carries the
// fields the export knows (ID, tenant, repository, created, host, signer);
// Finish fills in Objects, Snapshots and Parity. Running it again after an
// interruption redoes the whole pass and gives the same manifest for the
// same objects.
func Finish(ctx context.Context, root string, m *Manifest, k *crypto.SigningKey, o FinishOptions) error {
	if o.Share == 0 {
		o.Share = DefaultParityShare
	}
	if !(o.Share > 0 && o.Share <= MaxParityShare) {
		return fmt.Errorf("parity share %v outside (0, %v]", o.Share, MaxParityShare)
	}
	objs, err := listObjects(ctx, root)
	if err != nil {
		return err
	}
	if err := hashFiles(ctx, root, objs, o.Workers, o.Progress); err != nil {
		return err
	}
	m.Objects, m.Snapshots = objs, snapshotIDs(objs)
	l, par, err := writeParity(ctx, root, objs, o)
	if err != nil {
		return err
	}
	lb, err := json.Marshal(l)
	if err != nil {
		return err
	}
	m.Parity = Parity{Share: o.Share, Layout: lb, Files: par}
	body, err := m.Marshal()
	if err != nil {
		return err
	}
	if _, err := Parse(body); err != nil {
		return fmt.Errorf("the seed in %s does not make a valid manifest: %w", root, err)
	}
	return WriteManifest(root, m, k)
}

// listObjects lists root/objects sorted by name, refusing anything that is
// not a pack, index file, snapshot or receipt.
func listObjects(ctx context.Context, root string) ([]File, error) {
	st, err := store.OpenLocal(filepath.Join(root, ObjectsDir), false)
	if err != nil {
		return nil, fmt.Errorf("the seed's objects in %s: %w", root, err)
	}
	defer st.Close()
	var out []File
	err = st.List(ctx, "", func(i store.Info) error {
		k, err := vaultapi.ParseRepoName(i.Name)
		if err != nil {
			return fmt.Errorf("%s in the seed's objects is not an object coffer writes: %w", i.Name, err)
		}
		switch k {
		case vaultapi.KindPack, vaultapi.KindIndex, vaultapi.KindSnapshot, vaultapi.KindReceipt:
		default:
			return fmt.Errorf("%s: a seed holds packs, index files, snapshots and receipts only", i.Name)
		}
		out = append(out, File{Name: i.Name, Size: i.Size})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the seed in %s holds no objects: nothing was exported", root)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// hashFiles fills in the SHA-256 of files under root, several at once.
func hashFiles(ctx context.Context, root string, files []File, workers int, progress func(int64)) error {
	return eachFile(ctx, len(files), workers, func(i int, buf []byte) error {
		sum, n, err := hashFile(FilePath(root, files[i]), buf)
		if err != nil {
			return err
		}
		if n != files[i].Size {
			return fmt.Errorf("%s changed while the seed was finished (%d bytes, listed with %d)", files[i].Name, n, files[i].Size)
		}
		files[i].SHA256 = sum
		if progress != nil {
			progress(n)
		}
		return nil
	})
}

func hashFile(path string, buf []byte) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, buf)
	if err != nil {
		return "", n, fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func snapshotIDs(objs []File) []string {
	ids := []string{}
	for _, f := range objs {
		if strings.HasPrefix(f.Name, "snapshots/") {
			ids = append(ids, vaultapi.NameDigest(f.Name))
		}
	}
	return ids
}

func sizesOf(files []File) []int64 {
	s := make([]int64, len(files))
	for i, f := range files {
		s[i] = f.Size
	}
	return s
}

// writeParity plans and writes the parity files of objs, returning the
// layout and the parity files with their hashes.
func writeParity(ctx context.Context, root string, objs []File, o FinishOptions) (*parity.Layout, []File, error) {
	sizes := sizesOf(objs)
	l, err := parity.Plan(sizes, o.Share)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(root, ParityDir)
	if err := os.RemoveAll(dir); err != nil { // an interrupted run's files
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	par := make([]File, l.ParityShards)
	for j := range par {
		par[j] = File{Name: ParityName(j), Size: l.ShardSize}
	}
	open := func(i int) (io.ReaderAt, error) { return os.Open(FilePath(root, objs[i])) }
	create := func(j int) (io.WriterAt, error) {
		return os.OpenFile(FilePath(root, par[j]), os.O_CREATE|os.O_WRONLY, 0o644)
	}
	budget := o.MemoryBudget
	if budget <= 0 {
		budget = ParityBudget(len(objs) + l.ParityShards)
	}
	if err := parity.Encode(ctx, l, sizes, open, create, parity.Options{MemoryBudget: budget, Progress: o.Progress}); err != nil {
		return nil, nil, fmt.Errorf("writing the seed's parity: %w", err)
	}
	for j := range par { // a parity shard ending in zeros may be short on disk
		if err := os.Truncate(FilePath(root, par[j]), l.ShardSize); err != nil {
			return nil, nil, err
		}
	}
	if err := hashFiles(ctx, root, par, o.Workers, nil); err != nil {
		return nil, nil, err
	}
	return l, par, syncDir(dir)
}

// ParityBudget is the parity encoder's memory for a seed of files files:
// each window reads the same range of every file, so the budget grows with
// their number to keep reads at 256 KiB (a USB disk's seeks dominate below
// that), from 64 MiB up to 1 GiB. Above about 4000 files the reads shrink
// again: a seed of tens of thousands of files encodes slowly on a spinning
// disk (see ARCHITECTURE.md, "Seed parity").
func ParityBudget(files int) int64 {
	return min(max(int64(files)*(256<<10), 64<<20), 1<<30)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Layout decodes and validates the manifest's parity layout against its
// files: a layout read from a disk is outside input.
func (m *Manifest) Layout() (*parity.Layout, error) {
	dec := json.NewDecoder(bytes.NewReader(m.Parity.Layout))
	dec.DisallowUnknownFields()
	l := new(parity.Layout)
	if err := dec.Decode(l); err != nil {
		return nil, badf("parity layout: %v", err)
	}
	if err := l.Validate(sizesOf(m.Objects)); err != nil {
		return nil, badf("%v", err)
	}
	switch {
	case l.ParityShards != len(m.Parity.Files):
		return nil, badf("parity layout has %d parity shards, the manifest lists %d parity files", l.ParityShards, len(m.Parity.Files))
	case m.Parity.Files[0].Size != l.ShardSize:
		return nil, badf("parity files are %d bytes, the layout's shards %d", m.Parity.Files[0].Size, l.ShardSize)
	}
	return l, nil
}
