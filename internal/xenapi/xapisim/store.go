package xapisim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/clock"
)

const stateVersion = 1

// Sim is a simulator state folder. Every change goes through Update, which
// holds an exclusive flock on DIR/lock, so the command line and a running
// serve can work on the same folder at once.
type Sim struct {
	Dir   string
	Clock clock.Clock
}

// Open opens an initialised state folder.
func Open(dir string, c clock.Clock) (*Sim, error) {
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		return nil, fmt.Errorf("state folder %s: not initialised (run xapisim init --state %s): %w", dir, dir, err)
	}
	return &Sim{Dir: dir, Clock: clock.Or(c)}, nil
}

func (s *Sim) now() time.Time { return s.Clock.Now().UTC() }

// lock takes the folder's lock; the returned func releases it.
func (s *Sim) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state folder lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("state folder lock %s: %w", f.Name(), err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// Update runs fn on the state under the lock and saves the state when fn
// returns nil. An *APIError from fn is returned as it is, and the state is
// not saved.
func (s *Sim) Update(fn func(*State) error) error { return s.withState(fn, true) }

// View runs fn on the state under the lock without saving it.
func (s *Sim) View(fn func(*State) error) error { return s.withState(fn, false) }

// withState loads the state under the lock, runs fn, and saves the state
// when save is set and fn returned nil.
func (s *Sim) withState(fn func(*State) error, save bool) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	if err := fn(st); err != nil || !save {
		return err
	}
	return s.save(st)
}

func (s *Sim) load() (*State, error) {
	path := filepath.Join(s.Dir, "state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read simulator state: %w", err)
	}
	st, err := decodeState(b)
	if err != nil {
		return nil, fmt.Errorf("simulator state %s: %w (re-create the folder with xapisim init)", path, err)
	}
	return st, nil
}

// decodeState parses and checks state.json.
func decodeState(b []byte) (*State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("version %d, want %d", st.Version, stateVersion)
	}
	if st.Pool == nil || st.Host == nil || st.VMs == nil || st.VBDs == nil || st.VDIs == nil || st.SRs == nil {
		return nil, errors.New("pool, host, SRs, VMs, VBDs or VDIs missing")
	}
	if st.Sessions == nil {
		st.Sessions = map[string]*Session{}
	}
	if st.Tasks == nil {
		st.Tasks = map[string]*Task{}
	}
	if st.Switches == nil {
		st.Switches = map[string]string{}
	}
	if st.Networks == nil {
		st.Networks = map[string]*Network{}
	}
	if err := st.checkRefs(); err != nil {
		return nil, err
	}
	return &st, nil
}

// checkRefs checks that every object is present and points at objects
// that exist.
func (st *State) checkRefs() error {
	err := errors.Join(noNil("VM", st.VMs), noNil("SR", st.SRs), noNil("network", st.Networks),
		noNil("session", st.Sessions), noNil("task", st.Tasks))
	if err != nil {
		return err
	}
	for ref, v := range st.VDIs {
		if v == nil || st.SRs[v.SR] == nil {
			return fmt.Errorf("VDI %s is null or on a missing SR", ref)
		}
	}
	for ref, vbd := range st.VBDs {
		if vbd == nil || st.VMs[vbd.VM] == nil || (vbd.VDI != nullRef && st.VDIs[vbd.VDI] == nil) {
			return fmt.Errorf("VBD %s is null or points at a missing VM or VDI", ref)
		}
	}
	return nil
}

// noNil returns an error naming a null object of m.
func noNil[K comparable, V any](class string, m map[K]*V) error {
	for ref, v := range m {
		if v == nil {
			return fmt.Errorf("%s %v is null", class, ref)
		}
	}
	return nil
}

// save writes state.json atomically (temp file, rename); a simulator
// need not survive a power cut, so it does not fsync.
func (s *Sim) save(st *State) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.Dir, "state.json", b)
}

func writeFileAtomic(dir, name string, b []byte) error {
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

func hashPassword(salt, password string) string {
	h := sha256.Sum256([]byte(salt + "\x00" + password))
	return hex.EncodeToString(h[:])
}

// checkPassword compares in constant time.
func (p PasswordHash) check(password string) bool {
	want := hashPassword(p.Salt, password)
	return subtle.ConstantTimeCompare([]byte(want), []byte(p.Hash)) == 1
}
