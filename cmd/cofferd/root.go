package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/buildinfo"
	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// EnvStore names the vault's store when --store is not given.
const EnvStore = "COFFER_STORE"

// EnvObjectLock and EnvObjectLockDays give --object-lock and
// --object-lock-days, so the service and the admin commands run from one
// environment file lock alike.
const (
	EnvObjectLock     = "COFFER_OBJECT_LOCK"
	EnvObjectLockDays = "COFFER_OBJECT_LOCK_DAYS"
)

const defaultStore = "file://./coffer-vault"

// globals are the flags every command takes, and the process's streams.
type globals struct {
	storeURL string
	json     bool
	profile  cli.Profile

	stdout, stderr io.Writer
	// log is the structured logger (JSON on stderr).
	log *slog.Logger
	// clock is the time source of the registry and ledger (tests replace it).
	clock clock.Clock
	// createVault lets openState make a missing vault (cofferd init,
	// serve --init).
	createVault bool
	// objectLock and objectLockDays are --object-lock and
	// --object-lock-days (see lockPolicy).
	objectLock     string
	objectLockDays string
	// rates caps the store's request rate (serve sets it from its flags).
	rates store.RateLimits
	// publicEndpoint is the store's address as agents reach it, for the
	// presigned URLs of direct downloads (serve only).
	publicEndpoint string
}

// serveCommand builds `cofferd serve`; cmd_serve.go sets it in an init.
var serveCommand func(g *globals) *cobra.Command

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGlobals(ctx, &globals{stdout: stdout, stderr: stderr, log: slog.New(slog.NewJSONHandler(stderr, nil)), clock: clock.Real}, args)
}

// runGlobals is run with g made (tests give it their clock).
func runGlobals(ctx context.Context, g *globals, args []string) int {
	stderr := g.stderr
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	g.profile.Stop()
	if err != nil && (strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "accepts ") ||
		strings.Contains(err.Error(), "requires ")) {
		err = usageError{Err: err}
	}
	code := exitCode(ctx, err)
	if err != nil {
		cli.Report(stderr, "cofferd", err, code, errorKind(err, code), cli.WantsJSON(g.json, args), "interrupted")
	}
	return code
}

// errorKind names an error's class for scripts: usage, no_vault,
// interrupted, the vault's own code (not_found, exists, bad_request,
// credential_id_taken, ...), key_protected, or failure.
func errorKind(err error, code int) string {
	var ve *vaultapi.Error
	switch {
	case code == exitUsage:
		return "usage"
	case code == exitNoVault:
		return "no_vault"
	case code == exitInterrupted:
		return "interrupted"
	case errors.Is(err, vault.ErrKeyProtected):
		return "key_protected"
	case errors.As(err, &ve) && ve.Code != "":
		return ve.Code
	}
	return "failure"
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "cofferd",
		Short:         "Coffer vault: the multi-tenant backup server and its tenant tools",
		Long:          "Coffer vault: the multi-tenant backup server and its tenant tools.\n\n" + cli.EnvHelp(environment),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{Err: err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.storeURL, "store", envOr(EnvStore, defaultStore),
		"the vault's store: file:///dir or s3://host:port/bucket[/prefix] (env "+EnvStore+"; S3 keys from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
	pf.BoolVar(&g.json, "json", false, "machine-readable JSON output")
	pf.StringVar(&g.objectLock, "object-lock", os.Getenv(EnvObjectLock), "lock tenants' objects in the S3 bucket as they are stored: governance or compliance (env "+EnvObjectLock+"; the bucket must have been made with Object Lock)")
	pf.StringVar(&g.objectLockDays, "object-lock-days", envOr(EnvObjectLockDays, strconv.Itoa(defaultObjectLockDays)), "with --object-lock, days a new object stays locked (env "+EnvObjectLockDays+"): more than the GC grace period plus the longest gap between lock extensions")
	g.profile.AddFlag(pf)
	var clockFile string
	pf.StringVar(&clockFile, "clock-file", "", "move the clock forward by the duration in this file (tests)")
	_ = pf.MarkHidden("clock-file")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if clockFile != "" {
			g.clock = fileClock{path: clockFile}
		}
		return g.profile.Start()
	}
	root.AddCommand(newInitCmd(g), newTenantCmd(g), newHealthCmd(g), newEscrowCmd(g), newRestoreCmd(g), newNBDCmd(g), newVersionCmd(g))
	root.AddCommand(newDrillCmd(g), newGCCmd(g), newCheckCmd(g), newPruneCmd(g))
	root.AddCommand(newStatusCmd(g), newSeedCmd(g))
	root.Version = buildinfo.Version()
	if serveCommand != nil {
		root.AddCommand(serveCommand(g))
	}
	return root
}

// openState opens the vault's store and the registry and ledger over it.
// The returned store is the stack's Base, not retry-wrapped (an upload body
// streams once); the registry and ledger use a Retry decorator over it. The
// caller closes the store. When the store holds no vault it fails with a
// *noVaultError (exit 10), unless g.createVault is set (cofferd init, serve
// --init): then it makes the directory or bucket and vault/format.
func (g *globals) openState(ctx context.Context) (store.Store, *registry.Registry, *ledger.Ledger, error) {
	return g.openStateWait(ctx, 0)
}

// openStateWait is openState that, for up to wait, retries opening a store
// that is not reachable yet (cofferd started before MinIO, or a MinIO node
// still initialising), logging each attempt.
func (g *globals) openStateWait(ctx context.Context, wait time.Duration) (store.Store, *registry.Registry, *ledger.Ledger, error) {
	raw, err := g.storeTarget()
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := g.openStore(ctx, raw, wait)
	if err != nil {
		return nil, nil, nil, err
	}
	base, meta := st.Base, st.Retry
	reg, err := registry.New(meta, g.clock)
	if err == nil {
		err = g.checkVault(ctx, reg, base)
	}
	if err == nil {
		var l *ledger.Ledger
		if l, err = ledger.New(meta, meta, g.clock, g.log); err == nil {
			return base, reg, l, nil
		}
	}
	base.Close()
	return nil, nil, nil, err
}

// storeTarget checks --store and returns the URL to open. A relative
// file URL (file://./dir, the documented default, or file://../dir) is
// taken relative to the working directory.
func (g *globals) storeTarget() (string, error) {
	raw := g.storeURL
	if rest, ok := strings.CutPrefix(raw, "file://"); ok && (rest == "." || rest == ".." ||
		strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../")) {
		abs, err := filepath.Abs(rest)
		if err != nil {
			return "", usageError{Err: fmt.Errorf("--store %s: %w", raw, err)}
		}
		raw = "file://" + abs
	}
	t, err := storeurl.Parse(raw)
	if err != nil {
		return "", usageError{Err: fmt.Errorf("--store: %w", err)}
	}
	if t.Vault != nil {
		return "", usageError{Err: errors.New("--store must be a file:// or s3:// URL: a vault cannot keep its state in another vault")}
	}
	return raw, nil
}

// openStore opens the store, making a missing directory or bucket only
// when g.createVault is set. The registry and ledger use the stack's retry
// layer (store.DefaultRetry on g.clock, logged); the rest its Base: the
// provider under the object lock (--object-lock) and rate caps (g.rates).
func (g *globals) openStore(ctx context.Context, raw string, wait time.Duration) (*storeurl.Stack, error) {
	policy, err := g.lockPolicy()
	if err != nil {
		return nil, err
	}
	opts := storeurl.Options{Create: g.createVault, Retry: store.DefaultRetry, Clock: g.clock, Log: g.log,
		ObjectLock: policy, Rates: g.rates, PublicEndpoint: g.publicEndpoint}
	var st *storeurl.Stack
	open := func() error {
		var err error
		st, err = storeurl.Open(ctx, raw, opts)
		return err
	}
	if p := storeWaitPolicy(wait); p.Attempts > 1 {
		err = store.Do(ctx, p, g.clock, g.log, "waited for", "the store", open)
	} else {
		err = open()
	}
	if errors.Is(err, store.ErrNotFound) && !g.createVault {
		return nil, &noVaultError{location: raw, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("opening the vault store: %w", err)
	}
	return st, nil
}

// defaultObjectLockDays is --object-lock-days' default.
const defaultObjectLockDays = 30

// lockPolicy is the object lock policy of --object-lock and
// --object-lock-days: the vault's (vault.LockedObject), or none.
//
// The rule for the days: an object stays locked that long after it is
// stored or its lock was last extended, so they must exceed the grace
// period garbage collection gives an unreferenced pack plus the longest
// gap between two runs that extend the locks of what retained snapshots
// need; otherwise a needed pack's lock lapses in between.
func (g *globals) lockPolicy() (store.LockPolicy, error) {
	mode, err := store.ParseLockMode(g.objectLock)
	if err != nil {
		return store.LockPolicy{}, usageError{Err: fmt.Errorf("--object-lock (env %s): %w", EnvObjectLock, err)}
	}
	if mode == store.LockNone {
		return store.LockPolicy{}, nil
	}
	days, err := strconv.Atoi(g.objectLockDays)
	if err != nil || days < 1 || days > 36500 {
		return store.LockPolicy{}, usageError{Err: fmt.Errorf("--object-lock-days (env %s) %q: want a whole number of days from 1 to 36500",
			EnvObjectLockDays, termtext.Clip(g.objectLockDays, 20))}
	}
	return store.LockPolicy{Mode: mode, Retention: time.Duration(days) * 24 * time.Hour,
		Match: vault.LockedObject, Clock: g.clock}, nil
}

// checkVault checks vault/format, or with g.createVault makes it (on a
// store that honours conditional writes, which the vault's state needs).
func (g *globals) checkVault(ctx context.Context, reg *registry.Registry, base store.Store) error {
	if !g.createVault {
		err := reg.CheckFormat(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return &noVaultError{location: base.Location(), err: err}
		}
		return err
	}
	err := reg.CheckFormat(ctx)
	if !errors.Is(err, store.ErrNotFound) {
		return err // a vault is there (nil), or a broken one
	}
	if err := checkEmpty(ctx, base); err != nil {
		return err
	}
	if err := store.ProbeConditional(ctx, base); err != nil {
		return fmt.Errorf("refusing to make a vault: %w", err)
	}
	return reg.EnsureFormat(ctx)
}

// errNotEmpty stops the listing of checkEmpty at the first object.
var errNotEmpty = errors.New("not empty")

// checkEmpty refuses to make a vault in a store that already holds objects
// (a tenant's repository, or the wrong prefix of a bucket). Objects under
// vault/ do not count: they are another replica's init going on at the
// same time (its probe).
func checkEmpty(ctx context.Context, base store.Store) error {
	var first string
	err := base.List(ctx, "", func(i store.Info) error {
		if strings.HasPrefix(i.Name, "vault/") {
			return nil
		}
		first = i.Name
		return errNotEmpty
	})
	if errors.Is(err, errNotEmpty) {
		return fmt.Errorf("refusing to make a vault in %s: it holds objects (%s, ...) but no vault/format; is --store a repository or the wrong bucket prefix? A new vault needs an empty directory, bucket or prefix",
			base.Location(), termtext.Clip(first, 80))
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", base.Location(), err)
	}
	return nil
}

// noVaultError says that the store holds no vault (exit 10).
type noVaultError struct {
	location string
	err      error
}

func (e *noVaultError) Error() string {
	return fmt.Sprintf("no vault at %s: check --store (env %s), or create a vault there with: cofferd init --store %s",
		e.location, EnvStore, e.location)
}

func (e *noVaultError) Unwrap() error { return e.err }

// storeWaitPolicy retries opening the store (the shared retry layer, so
// permanent errors such as a missing bucket or refused credentials fail at
// once) for about wait: backing off from 1 s to 4 s (less for a short
// wait), with as many attempts as the mean backoffs fit in wait. Any
// positive wait retries at least once; 0 tries once.
func storeWaitPolicy(wait time.Duration) store.RetryPolicy {
	p := store.RetryPolicy{Attempts: 1, Base: time.Second, Max: 4 * time.Second}
	if wait <= 0 {
		return p
	}
	p.Base = max(min(p.Base, wait/2), time.Millisecond)
	p.Max = max(min(p.Max, wait/2), p.Base)
	var spent time.Duration
	for d := p.Base; p.Attempts < 1000; d = min(2*d, p.Max) {
		mean := d * 3 / 4 // the retry layer's full jitter waits d/2 to d
		if p.Attempts > 1 && spent+mean > wait {
			break
		}
		spent += mean
		p.Attempts++
	}
	return p
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
