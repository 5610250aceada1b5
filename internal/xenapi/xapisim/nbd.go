package xapisim

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cofferhq/coffer/internal/nbd"
)

// ParseExportName splits xapi's NBD export name "/<vdi-uuid>?session_id=<ref>".
func ParseExportName(name string) (vdiUUID, session string, err error) {
	path, query, ok := strings.Cut(name, "?")
	vdiUUID, hasSlash := strings.CutPrefix(path, "/")
	if !ok || !hasSlash || !uuidRE.MatchString(vdiUUID) {
		return "", "", errors.New("export name is not /<vdi-uuid>?session_id=<ref>")
	}
	q, err := url.ParseQuery(query)
	if err != nil || len(q["session_id"]) != 1 || len(q) != 1 {
		return "", "", errors.New("export name wants exactly one session_id parameter")
	}
	session = q.Get("session_id")
	if !validRef(session) {
		return "", "", errors.New("export name's session_id is not an OpaqueRef")
	}
	return vdiUUID, session, nil
}

// NBDExports opens exports for internal/nbd's Server the way xapi-nbd
// does: the session must be valid, the VDI must hold data, and each
// connection plugs the VDI read-only into dom0 while it lasts.
type NBDExports struct {
	Sim *Sim

	mu      sync.Mutex
	opening map[string]bool // VDI refs whose connection is being set up
	seen    os.FileInfo     // state.json when drop was read
	drop    int
	conns   map[*watchedConn]bool
	closed  bool
	running sync.WaitGroup // serveConn goroutines
}

// nbdExport is one connection's view of a VDI.
type nbdExport struct {
	*chainReader
	x      *NBDExports
	conn   *watchedConn // nil when opened through Open
	vdi    string
	vbd    string
	mu     sync.Mutex
	reads  int
	setup  bool
	closed bool
}

// Open is internal/nbd's Server.Open. Exports it opens cannot tell a
// client's DISC from an abrupt close, so leak-attachments leaks them all;
// Serve's exports can.
func (x *NBDExports) Open(ctx context.Context, name string) (nbd.ServerExport, error) {
	return x.open(name, nil)
}

func (x *NBDExports) open(name string, conn *watchedConn) (nbd.ServerExport, error) {
	vdiUUID, session, err := ParseExportName(name)
	if err != nil {
		return nil, err
	}
	e := &nbdExport{x: x, conn: conn}
	err = x.Sim.Update(func(st *State) error {
		if st.Sessions[session] == nil {
			return errors.New("the session is not valid (SESSION_INVALID)")
		}
		for ref, v := range st.VDIs {
			if v.UUID == vdiUUID {
				e.vdi = ref
			}
		}
		v := st.VDIs[e.vdi]
		if v == nil {
			return fmt.Errorf("no VDI %s", vdiUUID)
		}
		if v.Type == "cbt_metadata" {
			return errors.New("can't create a stream from a metadata VDI")
		}
		if err := x.beginSetup(st, e.vdi); err != nil {
			return err
		}
		e.setup = true
		if e.chainReader, err = x.Sim.openChain(v.Chain, v.VirtualSize); err != nil {
			x.endSetup(e.vdi)
			return err
		}
		u, ref := newRef()
		st.VBDs[ref] = &VBD{UUID: u, VM: st.controlDomain(), VDI: e.vdi, UserDevice: "autodetect", Type: "Disk",
			Mode: "RO", Attached: true, NBD: true}
		e.vbd = ref
		st.NBDConns++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// beginSetup refuses a second connection to a VDI while another one is
// still being set up, under the nbd-in-use-race switch (xapi's
// VDI_IN_USE on plug).
func (x *NBDExports) beginSetup(st *State, vdi string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.opening == nil {
		x.opening = map[string]bool{}
	}
	if _, race := st.Switches[SwitchNBDInUseRace]; race && x.opening[vdi] {
		return fmt.Errorf("VDI_IN_USE [%s, plug]: another connection to it is being set up", vdi)
	}
	x.opening[vdi] = true
	return nil
}

func (x *NBDExports) endSetup(vdi string) {
	x.mu.Lock()
	delete(x.opening, vdi)
	x.mu.Unlock()
}

// ReadAt serves a READ; under nbd-drop-every=N every Nth READ of the
// connection drops it. The connection counts as set up after its first
// READ.
func (e *nbdExport) ReadAt(p []byte, off int64) (int, error) {
	e.mu.Lock()
	e.reads++
	n := e.reads
	if e.setup {
		e.setup = false
		e.x.endSetup(e.vdi)
	}
	e.mu.Unlock()
	if every := e.x.dropEvery(); every > 0 && n%every == 0 {
		return 0, fmt.Errorf("xapisim switch nbd-drop-every=%d: %w", every, nbd.ErrDropConnection)
	}
	return e.chainReader.ReadAt(p, off)
}

// dropEvery is the nbd-drop-every switch as state.json has it now, so a
// running serve honours a change at once. Every save renames a new file
// into place, so the state is read again only when the file changed.
func (x *NBDExports) dropEvery() int {
	fi, err := os.Stat(filepath.Join(x.Sim.Dir, "state.json"))
	x.mu.Lock()
	if err == nil && x.seen != nil && os.SameFile(fi, x.seen) {
		n := x.drop
		x.mu.Unlock()
		return n
	}
	x.mu.Unlock()
	n := 0
	_ = x.Sim.View(func(st *State) error {
		n = st.switchCount(SwitchNBDDropEvery)
		return nil
	})
	x.mu.Lock()
	x.seen, x.drop = fi, n
	x.mu.Unlock()
	return n
}

// Close ends the connection's dom0 attachment, unless leak-attachments is
// on and the client left without NBD_CMD_DISC: then the dom0 VBD stays
// plugged until VBD.unplug and VBD.destroy.
func (e *nbdExport) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	if e.setup {
		e.x.endSetup(e.vdi)
	}
	e.mu.Unlock()
	e.chainReader.Close()
	return e.x.Sim.Update(func(st *State) error {
		st.NBDConns = max(0, st.NBDConns-1)
		if _, leak := st.Switches[SwitchLeakAttachments]; leak && (e.conn == nil || !e.conn.sentDisc()) {
			return nil
		}
		delete(st.VBDs, e.vbd)
		return nil
	})
}
