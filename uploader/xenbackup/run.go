package xenbackup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/uploader"
)

// Options say what a night backs up and how.
type Options struct {
	Xen  *xenapi.Session
	Repo *repo.Repo // its index loaded
	// Session tunes the backup session all VMs share.
	Session uploader.SessionOptions
	// VMs are the names or UUIDs to back up; All picks every VM of the
	// pool instead (never templates, snapshots or the control domain).
	// Exclude names or UUIDs are skipped either way.
	VMs     []string
	All     bool
	Exclude []string
	// Parallel is how many VMs are backed up at once; 2 when 0.
	Parallel int
	Tags     []string // added to every Coffer snapshot
	// FullRead reads every disk whole even when its changed blocks are
	// known (a periodic full read, or to compare the two).
	FullRead bool
	// UnusableParents names snapshots (by ID) a changed-block night must
	// not patch, with why: it reads such a VM's disks in full instead (a
	// snapshot whose seed was cancelled needs chunks that never arrived).
	UnusableParents map[string]string
	NBD             NBDOptions
	// Events, when set, hears what happens, one line at a time, as it
	// happens (for the progress output).
	Events func(Event)
	Clock  clock.Clock
}

// NBDOptions tune the disk reads.
type NBDOptions struct {
	ConnsPerDisk int  // 4 when 0
	ConnsPerHost int  // 16 when 0: xapi's limit
	AllowPlain   bool // read an insecure_nbd network's exports without TLS
	// Dial opens connections (tests); a net.Dialer when nil.
	Dial nbd.DialOptions
}

// Event is one thing that happened, for progress output.
type Event struct {
	VM      string // the VM's name ("" for the run)
	Message string
}

// Result is what a night did.
type Result struct {
	VMs     []VMResult
	Session uploader.SessionInfo
	Cleanup CleanupReport
	// StoredBytes and Packs are what the session uploaded.
	StoredBytes, Packs int64
	Duration           time.Duration
}

// Failed returns the VMs that were not backed up.
func (r *Result) Failed() []VMResult {
	var out []VMResult
	for _, v := range r.VMs {
		if v.Err != nil {
			out = append(out, v)
		}
	}
	return out
}

// VMResult is one VM's night.
type VMResult struct {
	Name         string
	UUID         string
	SnapshotID   string // the Coffer snapshot; "" when the VM failed
	SnapshotName string
	Time         time.Time // the Coffer snapshot's time
	Disks        []DiskResult
	Err          error
	Warnings     []string
	Duration     time.Duration
}

// DiskResult is one disk's night.
type DiskResult struct {
	UserDevice    string
	VDI           string
	Size          int64
	Read          string // manifest.XenReadChanged or XenReadFull
	Reason        string // why a full read
	ChangedBlocks int64
	ReadBytes     int64 // bytes read over NBD
	Fetched       int64 // bytes of last night's chunks read back from the repository
	NewBytes      int64
	Reconnects    int64
}

// ErrNoVMs is returned when the selection names no VM at all.
var ErrNoVMs = errors.New("no VM to back up")

// Run backs up the selected VMs of the pool. It returns an error only when
// the night could not start (or end) at all; a VM that fails is reported
// in its VMResult and the others go on.
func Run(ctx context.Context, opt Options) (*Result, error) {
	start := clock.Start()
	n := &night{opt: opt, clock: clock.Or(opt.Clock)}
	if n.opt.Parallel <= 0 {
		n.opt.Parallel = 2
	}
	if err := n.loadPool(ctx); err != nil {
		return nil, err
	}
	targets, missing, err := n.selectVMs()
	if err != nil {
		return nil, err
	}
	if err := n.loadHistory(ctx); err != nil {
		return nil, err
	}
	res := &Result{}
	res.Cleanup = n.cleanup(ctx)
	s, err := uploader.StartSession(ctx, opt.Repo, opt.Session)
	if err != nil {
		return nil, err
	}
	n.session = s
	res.Session = s.Info()
	res.VMs = append(res.VMs, missing...)
	res.VMs = append(res.VMs, n.backupAll(ctx, targets)...)
	if ctx.Err() != nil {
		// Interrupted: the packs in flight are finished and indexed for
		// the next night; the open ones are dropped.
		s.Stop()
		return nil, context.Cause(ctx)
	}
	if err := s.Close(ctx); err != nil {
		return nil, err
	}
	sort.Slice(res.VMs, func(i, j int) bool { return res.VMs[i].Name < res.VMs[j].Name })
	res.StoredBytes, res.Packs = s.Stored()
	res.Duration = start.Elapsed()
	return res, nil
}

// backupAll backs the VMs up, Parallel at a time.
func (n *night) backupAll(ctx context.Context, targets []vmTarget) []VMResult {
	out := make([]VMResult, len(targets))
	sem := make(chan struct{}, n.opt.Parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = n.backupVM(ctx, t)
		})
	}
	wg.Wait()
	return out
}

func (n *night) event(vm, format string, a ...any) {
	if n.opt.Events != nil {
		n.opt.Events(Event{VM: vm, Message: fmt.Sprintf(format, a...)})
	}
}

// selectVMs resolves the selection against the pool's VMs. Names or UUIDs
// that match nothing become failed results, so the night goes on with the
// others and still exits with the partial-failure status.
func (n *night) selectVMs() ([]vmTarget, []VMResult, error) {
	excluded := func(ref xenapi.Ref) bool {
		vm := n.vms[ref]
		for _, x := range n.opt.Exclude {
			if strings.EqualFold(x, vm.UUID) || x == vm.NameLabel {
				return true
			}
		}
		return false
	}
	var targets []vmTarget
	var missing []VMResult
	seen := map[xenapi.Ref]bool{}
	add := func(ref xenapi.Ref) {
		if !seen[ref] && !excluded(ref) {
			seen[ref] = true
			targets = append(targets, vmTarget{ref: ref, vm: n.vms[ref]})
		}
	}
	if n.opt.All {
		for ref, vm := range n.vms {
			if backupCandidate(vm) {
				add(ref)
			}
		}
	}
	for _, sel := range n.opt.VMs {
		refs := n.match(sel)
		switch len(refs) {
		case 0:
			missing = append(missing, VMResult{Name: sel, Err: fmt.Errorf("no VM of the pool is named %q or has that UUID (templates, snapshots and the control domain are never backed up)", sel)})
		case 1:
			add(refs[0])
		default:
			missing = append(missing, VMResult{Name: sel, Err: fmt.Errorf("%d VMs are named %q: name one by its UUID (coffer backup --vm UUID)", len(refs), sel)})
		}
	}
	if len(targets) == 0 && len(missing) == 0 {
		return nil, nil, fmt.Errorf("%w: name VMs with --vm NAME|UUID or pick them all with --all", ErrNoVMs)
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].vm.NameLabel < targets[j].vm.NameLabel })
	return targets, missing, nil
}

func (n *night) match(sel string) []xenapi.Ref {
	var refs []xenapi.Ref
	for ref, vm := range n.vms {
		if backupCandidate(vm) && (strings.EqualFold(sel, vm.UUID) || sel == vm.NameLabel) {
			refs = append(refs, ref)
		}
	}
	return refs
}

// backupCandidate: a real VM, not a template, a snapshot or dom0.
func backupCandidate(vm xenapi.VM) bool {
	return !vm.IsATemplate && !vm.IsASnapshot && !vm.IsControlDomain
}
