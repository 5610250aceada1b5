package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/keycache"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
	"github.com/cofferhq/coffer/vault"
)

const strongPass = "tulip orbit canyon mosaic"

// keyAgent is an agent with a config file and a local repository.
type keyAgent struct {
	t          *testing.T
	dir, conf  string
	repoDir    string
	id         string
	stateFile  string
	kdfBefore  uint64
	lastResult runResult
}

func newKeyAgent(t *testing.T) *keyAgent {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", strongPass)
	t.Setenv("COFFER_PASSWORD_FILE", "")
	t.Setenv("COFFER_REPOSITORY", "")
	dir := t.TempDir()
	a := &keyAgent{t: t, dir: dir, conf: filepath.Join(dir, "agent", "coffer.yaml"), repoDir: filepath.Join(dir, "repo")}
	a.mustRun("init", "--repo", "file://"+a.repoDir)
	st, err := store.OpenLocal(a.repoDir, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, _, err := repo.ReadConfig(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	a.id = cfg.ID
	a.stateFile = filepath.Join(dir, "agent", "repos", a.id+".json")
	return a
}

// run runs coffer as a new process would: nothing unlocked in memory.
func (a *keyAgent) run(args ...string) runResult {
	a.t.Helper()
	repo.ForgetUnlocked()
	a.kdfBefore = crypto.KDFRuns()
	a.lastResult = runCoffer(a.t, append([]string{"--config", a.conf}, args...)...)
	return a.lastResult
}

func (a *keyAgent) mustRun(args ...string) runResult {
	a.t.Helper()
	r := a.run(args...)
	if r.code != 0 {
		a.t.Fatalf("coffer %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// kdfRuns is how many times argon2id ran in the last command.
func (a *keyAgent) kdfRuns() uint64 { return crypto.KDFRuns() - a.kdfBefore }

func (a *keyAgent) entry() *keycache.Entry {
	a.t.Helper()
	e, err := keycache.Load(filepath.Dir(a.stateFile), a.id)
	if err != nil {
		a.t.Fatalf("the agent's key file: %v", err)
	}
	return e
}

func (a *keyAgent) slots() []string {
	a.t.Helper()
	ents, _ := os.ReadDir(filepath.Join(a.repoDir, "keys"))
	var names []string
	for _, e := range ents {
		names = append(names, "keys/"+e.Name())
	}
	return names
}

// The second command on an agent does not run argon2id, nor ask for the
// passphrase: init kept the key, mode 0600, and nothing printed it.
func TestKeptKeySkipsKDF(t *testing.T) {
	a := newKeyAgent(t)
	fi, err := os.Stat(a.stateFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file after init: %v, %v; want mode 0600", fi, err)
	}
	e := a.entry()
	if len(e.Key) != crypto.KeySize || e.Slot != a.slots()[0] {
		t.Fatalf("key file after init: %v", e)
	}
	t.Setenv("COFFER_PASSWORD", "")
	r := a.mustRun("snapshots")
	if a.kdfRuns() != 0 {
		t.Fatalf("snapshots ran argon2id %d times with a kept key", a.kdfRuns())
	}
	b, _ := os.ReadFile(a.stateFile)
	if bytes.Contains(b, []byte(strongPass)) {
		t.Fatal("the key file holds the passphrase")
	}
	for _, secret := range []string{hex.EncodeToString(e.Key), base64.StdEncoding.EncodeToString(e.Key)} {
		if strings.Contains(r.stdout+r.stderr+a.lastResult.stderr, secret) {
			t.Fatal("a command printed the kept key")
		}
	}
	// Off by flag: the passphrase is needed and the KDF runs, and the key
	// is not kept any more.
	t.Setenv("COFFER_PASSWORD", strongPass)
	a.mustRun("--no-key-cache", "snapshots")
	if a.kdfRuns() != 1 || len(a.entry().Key) != 0 {
		t.Fatalf("--no-key-cache: %d KDF runs, key kept %v", a.kdfRuns(), len(a.entry().Key) > 0)
	}
	a.mustRun("snapshots") // keeps it again
	if a.kdfRuns() != 1 || len(a.entry().Key) != crypto.KeySize {
		t.Fatalf("back on: %d KDF runs, key kept %v", a.kdfRuns(), len(a.entry().Key) > 0)
	}
	// Off in the config file.
	cb, _ := os.ReadFile(a.conf)
	if err := os.WriteFile(a.conf, append(cb, []byte("key_cache: false\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	a.mustRun("snapshots")
	if a.kdfRuns() != 1 || len(a.entry().Key) != 0 {
		t.Fatalf("key_cache: false: %d KDF runs, key kept %v", a.kdfRuns(), len(a.entry().Key) > 0)
	}
}

// A kept key that does not authenticate the repository (tampered, or
// another repository's) is not used: a warning, the passphrase, and the
// file is replaced by a good one.
func TestKeptKeyTamperedOrForeign(t *testing.T) {
	a := newKeyAgent(t)
	good := a.entry()
	other := newKeyAgent(t)
	t.Setenv("COFFER_PASSWORD", strongPass)
	cases := map[string]func(e *keycache.Entry){
		"tampered": func(e *keycache.Entry) { e.Key[0] ^= 1 },
		"foreign":  func(e *keycache.Entry) { e.Key = other.entry().Key },
	}
	for name, edit := range cases {
		e := *good
		e.Key = bytes.Clone(good.Key)
		edit(&e)
		if err := keycache.Save(filepath.Dir(a.stateFile), e); err != nil {
			t.Fatal(err)
		}
		r := a.mustRun("snapshots")
		if !strings.Contains(r.stderr, "warning: the key kept for repository "+a.id) || !strings.Contains(r.stderr, "does not authenticate") || a.kdfRuns() != 1 {
			t.Fatalf("%s key: %d KDF runs\n%s", name, a.kdfRuns(), r.stderr)
		}
		if got := a.entry(); !bytes.Equal(got.Key, good.Key) {
			t.Fatalf("%s key: the file was not replaced by the good key", name)
		}
	}
	// A file for another repository under this one's name, and one that
	// others can read: not used, removed, warned about.
	oe := *other.entry()
	b, _ := json.Marshal(oe)
	for name, mode := range map[string]os.FileMode{"other repository": 0o600, "mode 0644": 0o644} {
		content := b
		if mode == 0o644 {
			content, _ = os.ReadFile(a.stateFile)
		}
		if err := os.WriteFile(a.stateFile, content, mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(a.stateFile, mode)
		r := a.mustRun("snapshots")
		if !strings.Contains(r.stderr, "warning: "+a.stateFile) || !strings.Contains(r.stderr, "not used") || a.kdfRuns() != 1 {
			t.Fatalf("%s: %d KDF runs\n%s", name, a.kdfRuns(), r.stderr)
		}
		if fi, _ := os.Stat(a.stateFile); fi.Mode().Perm() != 0o600 || !bytes.Equal(a.entry().Key, good.Key) {
			t.Fatalf("%s: file not replaced", name)
		}
	}
}

func TestKeyForget(t *testing.T) {
	a := newKeyAgent(t)
	r := a.mustRun("--json", "key", "forget")
	var out struct {
		Type, Repository string
		Removed          bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Type != "key_forget" || out.Repository != a.id || !out.Removed {
		t.Fatalf("key forget --json: %q, %v", r.stdout, err)
	}
	if _, err := os.Stat(a.stateFile); !os.IsNotExist(err) {
		t.Fatalf("key file after forget: %v", err)
	}
	if r := a.mustRun("key", "forget"); !strings.Contains(r.stdout, "no key kept") {
		t.Fatalf("second forget: %q", r.stdout)
	}
	t.Setenv("COFFER_PASSWORD", "")
	if r := a.run("snapshots"); r.code != 2 || !strings.Contains(r.stderr, "no passphrase") {
		t.Fatalf("snapshots after forget without a passphrase: exit %d\n%s", r.code, r.stderr)
	}
}

// key passwd asks for the current passphrase even with a kept key, and
// refreshes the kept key's slot; --json has the documented shape.
func TestKeyPasswdRefreshesKeptKey(t *testing.T) {
	a := newKeyAgent(t)
	old := a.slots()[0]
	t.Setenv("COFFER_PASSWORD", "wrong passphrase entirely")
	t.Setenv("COFFER_NEW_PASSWORD", "another fine passphrase here")
	if r := a.run("key", "passwd"); r.code != 12 {
		t.Fatalf("passwd with a wrong current passphrase and a kept key: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv("COFFER_PASSWORD", strongPass)
	r := a.mustRun("--json", "key", "passwd")
	var out keyPasswdJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Type != "key_passwd" || out.OldSlot != old || !out.OldSlotRemoved || out.Repository != a.id || out.OperatorCommand != "" {
		t.Fatalf("key passwd --json: %q, %v", r.stdout, err)
	}
	if got := a.slots(); len(got) != 1 || got[0] != out.NewSlot {
		t.Fatalf("slots after passwd: %v, want [%s]", got, out.NewSlot)
	}
	if e := a.entry(); e.Slot != out.NewSlot || len(e.Key) != crypto.KeySize {
		t.Fatalf("kept key after passwd: %v", e)
	}
	t.Setenv("COFFER_PASSWORD", "")
	a.mustRun("snapshots")
	if a.kdfRuns() != 0 {
		t.Fatalf("after passwd, snapshots ran argon2id %d times", a.kdfRuns())
	}
}

// A planted slot over the KDF limit is skipped with a warning naming it:
// the command stays fast even when every slot must be tried.
func TestPlantedCostlySlotSkipped(t *testing.T) {
	a := newKeyAgent(t)
	s, err := crypto.NewPassphraseSlot(mustMaster(t), []byte("x"), crypto.DefaultKDF(), time.Now(), "mallory-host\x1b[2J")
	if err != nil {
		t.Fatal(err)
	}
	s.KDF.Time, s.KDF.MemoryKiB = 20, 1<<20
	b, _ := s.Marshal()
	st, _ := store.OpenLocal(a.repoDir, false)
	name := "keys/" + sha256Hex(b)
	if err := st.Put(t.Context(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COFFER_PASSWORD", "not the passphrase at all")
	start := time.Now()
	r := a.run("--no-key-cache", "snapshots")
	if r.code != 12 || !strings.Contains(r.stderr, "key slot "+name) || !strings.Contains(r.stderr, "skipped") || !strings.Contains(r.stderr, "host mallory-host") {
		t.Fatalf("wrong passphrase with a costly slot: exit %d\n%s", r.code, r.stderr)
	}
	if el := time.Since(start); el > 5*time.Second || a.kdfRuns() != 1 {
		t.Fatalf("took %v and %d KDF runs", el, a.kdfRuns())
	}
	t.Setenv("COFFER_PASSWORD", strongPass)
	r = a.mustRun("--json", "key", "list")
	var out struct {
		Slots []keySlotJSON
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Slots) != 2 || strings.Contains(r.stdout, "salt") {
		t.Fatalf("key list --json: %q %v", r.stdout, err)
	}
	for _, sl := range out.Slots {
		costly := "keys/"+sl.ID == name
		if costly != (sl.State == "over_limit") || costly == sl.Current || sl.Claimed == nil || sl.KDF == nil || sl.KDF.Name != "argon2id" {
			t.Errorf("slot %+v", sl)
		}
	}
	r = a.mustRun("key", "list")
	if !strings.Contains(r.stdout, "CLAIMED HOST") || !strings.Contains(r.stdout, `mallory-host\x1b[2J`) || !strings.Contains(r.stdout, "over this agent's KDF limit") ||
		strings.Contains(r.stdout+r.stderr, "\x1b") {
		t.Fatalf("key list:\n%s", r.stdout)
	}
}

// Weak passphrases are refused at init and key passwd, with the reason and
// without echoing them, unless --insecure-passphrase. This test uses the
// real KDF: the strength check is off under the test-only KDF.
func TestWeakPassphraseRefused(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "")
	t.Setenv("COFFER_PASSWORD", "correct horse")
	t.Setenv("COFFER_REPOSITORY", "")
	dir := t.TempDir()
	conf, repoDir := filepath.Join(dir, "coffer.yaml"), filepath.Join(dir, "repo")
	r := runCoffer(t, "--config", conf, "init", "--repo", "file://"+repoDir)
	if r.code != 1 || !strings.Contains(r.stderr, "too weak") || !strings.Contains(r.stderr, "10^8 guesses") ||
		!strings.Contains(r.stderr, "--insecure-passphrase") || strings.Contains(r.stderr, "correct horse") {
		t.Fatalf("init with a weak passphrase: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Fatal("a refused init wrote the config")
	}
	if ents, _ := os.ReadDir(repoDir); len(ents) != 0 {
		t.Fatalf("a refused init stored %d objects", len(ents))
	}
	r = runCoffer(t, "--config", conf, "init", "--repo", "file://"+repoDir, "--insecure-passphrase")
	if r.code != 0 || !strings.Contains(r.stderr, "used anyway") {
		t.Fatalf("init --insecure-passphrase: exit %d\n%s", r.code, r.stderr)
	}
	keysBefore, _ := os.ReadDir(filepath.Join(repoDir, "keys"))
	t.Setenv("COFFER_NEW_PASSWORD", "short")
	r = runCoffer(t, "--config", conf, "key", "passwd")
	if r.code != 1 || !strings.Contains(r.stderr, "5 characters long; use at least 12") || strings.Contains(r.stderr, "short\n") {
		t.Fatalf("passwd to a weak passphrase: exit %d\n%s", r.code, r.stderr)
	}
	if keysAfter, _ := os.ReadDir(filepath.Join(repoDir, "keys")); len(keysAfter) != len(keysBefore) || keysAfter[0].Name() != keysBefore[0].Name() {
		t.Fatal("a refused passwd changed the key slots")
	}
	t.Setenv("COFFER_NEW_PASSWORD", "line\nbreak passphrase")
	if r = runCoffer(t, "--config", conf, "key", "passwd", "--insecure-passphrase"); r.code != 1 || !strings.Contains(r.stderr, "line break") {
		t.Fatalf("passwd to a passphrase with a line break: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv("COFFER_NEW_PASSWORD", "short")
	if r = runCoffer(t, "--config", conf, "key", "passwd", "--insecure-passphrase"); r.code != 0 {
		t.Fatalf("passwd --insecure-passphrase: exit %d\n%s", r.code, r.stderr)
	}
}

// --password-file: every trailing CR and LF is removed, nothing else.
func TestPasswordFileBytes(t *testing.T) {
	t.Setenv("COFFER_PASSWORD", "")
	f := filepath.Join(t.TempDir(), "pw")
	for content, want := range map[string]string{
		"pass phrase\n":         "pass phrase",
		"pass phrase\r\n":       "pass phrase",
		"pass phrase \t\n\n":    "pass phrase \t",
		" pass phrase":          " pass phrase",
		"\ufeffpass phrase\r\n": "\ufeffpass phrase",
	} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readSecret("COFFER_PASSWORD", f, "", false, os.Stderr)
		if err != nil || string(got) != want {
			t.Errorf("file %q: got %q, %v; want %q", content, got, err, want)
		}
	}
	if err := os.WriteFile(f, []byte("\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecret("COFFER_PASSWORD", f, "", false, os.Stderr); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("a file of line breaks: %v", err)
	}
}

func mustMaster(t *testing.T) *crypto.MasterKey {
	t.Helper()
	mk, err := crypto.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkPasswdThroughVault: the slot key passwd added through a vault
// claims the agent's credential id (never its secret), and --json names the
// operator command.
func checkPasswdThroughVault(t *testing.T, conf string, st store.Store) {
	t.Helper()
	g := &globals{configPath: conf}
	c, err := g.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := vaultapi.ParseCredential(c.Credential.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	slots, err := repo.ListSlots(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	claimed := 0
	for _, s := range slots {
		if s.Slot != nil && s.Slot.Credential == id && s.Slot.Note == "coffer key passwd" {
			claimed++
		}
		raw, _ := store.ReadAll(t.Context(), st, s.Name)
		if bytes.Contains(raw, []byte(c.Credential.Reveal())) {
			t.Fatalf("slot %s holds the credential", s.Name)
		}
	}
	if claimed != 1 {
		t.Fatalf("%d slots claim credential %s, want 1", claimed, id)
	}
	t.Setenv("COFFER_NEW_PASSWORD", "battery staple horse")
	r := runCoffer(t, "--config", conf, "--json", "key", "passwd")
	var out keyPasswdJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.OldSlotRemoved ||
		out.OperatorCommand != "cofferd tenant remove-key acme "+strings.TrimPrefix(out.OldSlot, "keys/") {
		t.Fatalf("key passwd --json through a vault: exit %d %q %v\n%s", r.code, r.stdout, err, r.stderr)
	}
}

// Through the real vault, a 65th key slot is refused: key passwd exits 1
// with the vault's reason and what to do, nothing is stored, and the
// repository still opens.
func TestKeyPasswdOverSlotLimitThroughRealVault(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", strongPass)
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	ctx := t.Context()
	reg, data, ts := realVault(t)
	ten, tok, _, err := reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "coffer.yaml")
	if r := runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", tok.Reveal()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	mk := mustMaster(t)
	for i := 1; i < vault.MaxKeySlots; i++ {
		s, err := crypto.NewPassphraseSlot(mk, []byte("other"), crypto.DefaultKDF(), time.Now(), "filler")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := s.Marshal()
		if err := data.Put(ctx, "repos/"+ten.ID+"/keys/"+sha256Hex(b), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		n := 0
		_ = data.List(ctx, "repos/"+ten.ID+"/keys/", func(store.Info) error { n++; return nil })
		return n
	}
	t.Setenv("COFFER_NEW_PASSWORD", "another fine passphrase here")
	r := runCoffer(t, "--config", conf, "key", "passwd")
	if r.code != 1 || !strings.Contains(r.stderr, "too_many_key_slots") || !strings.Contains(r.stderr, "cofferd tenant remove-key") {
		t.Fatalf("key passwd over the slot limit: exit %d\n%s", r.code, r.stderr)
	}
	if n := count(); n != vault.MaxKeySlots {
		t.Fatalf("%d key slots stored, want %d", n, vault.MaxKeySlots)
	}
	if r := runCoffer(t, "--config", conf, "--no-key-cache", "snapshots"); r.code != 0 {
		t.Fatalf("the old passphrase after the refusal: exit %d\n%s", r.code, r.stderr)
	}
}
