package xapisim

import (
	"crypto/rand"
	"fmt"
	"regexp"
	"time"
)

// State is everything the simulator remembers, saved as state.json in the
// state folder. Maps are keyed by ref ("OpaqueRef:<uuid>").
type State struct {
	Version  int                 `json:"version"`
	Password PasswordHash        `json:"password"`
	Pool     *Pool               `json:"pool"`
	Host     *Host               `json:"host"`
	SRs      map[string]*SR      `json:"srs"`
	Networks map[string]*Network `json:"networks"`
	VMs      map[string]*VM      `json:"vms"`
	VBDs     map[string]*VBD     `json:"vbds"`
	VDIs     map[string]*VDI     `json:"vdis"`
	Sessions map[string]*Session `json:"sessions"`
	Tasks    map[string]*Task    `json:"tasks"`
	// Switches are the field failures in force (name -> value, "" when
	// the switch takes none).
	Switches map[string]string `json:"switches"`
	// NBDConns counts the NBD connections a running serve holds.
	NBDConns int `json:"nbd_conns"`
}

// PasswordHash is the root password, salted and hashed; it never holds the
// password itself.
type PasswordHash struct {
	Salt string `json:"salt"`
	Hash string `json:"hash"`
}

// Pool is the one pool.
type Pool struct {
	UUID      string `json:"uuid"`
	Ref       string `json:"ref"`
	NameLabel string `json:"name_label"`
	DefaultSR string `json:"default_sr"`
}

// Host is the pool's one host (its master).
type Host struct {
	UUID      string `json:"uuid"`
	Ref       string `json:"ref"`
	NameLabel string `json:"name_label"`
	Address   string `json:"address"`
}

// SR is a storage repository: the local disk SR, or the ISO library.
type SR struct {
	UUID        string `json:"uuid"`
	NameLabel   string `json:"name_label"`
	Type        string `json:"type"`
	ContentType string `json:"content_type"`
	PhysSize    int64  `json:"physical_size"`
}

// Network is a network; Purpose may hold "nbd".
type Network struct {
	UUID      string   `json:"uuid"`
	NameLabel string   `json:"name_label"`
	Purpose   []string `json:"purpose"`
}

// VM is a VM, a snapshot or the control domain.
type VM struct {
	UUID            string            `json:"uuid"`
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description"`
	PowerState      string            `json:"power_state"`
	IsControlDomain bool              `json:"is_control_domain"`
	IsSnapshot      bool              `json:"is_a_snapshot"`
	SnapshotOf      string            `json:"snapshot_of"`
	SnapshotTime    time.Time         `json:"snapshot_time"`
	Tags            []string          `json:"tags"`
	OtherConfig     map[string]string `json:"other_config"`
	BlockedOps      map[string]string `json:"blocked_operations"`
	// Memory (memory_static_max) and VCPUs (VCPUs_max) as an import
	// recorded them; 0 means the simulator's defaults (2 GiB, 2).
	Memory int64 `json:"memory,omitempty"`
	VCPUs  int64 `json:"vcpus,omitempty"`
}

// VBD connects a VDI (or an empty CD drive) to a VM.
type VBD struct {
	UUID       string `json:"uuid"`
	VM         string `json:"vm"`
	VDI        string `json:"vdi"`
	UserDevice string `json:"userdevice"`
	Type       string `json:"type"`
	Mode       string `json:"mode"`
	Attached   bool   `json:"currently_attached"`
	// Bootable as an import recorded it; nil means userdevice 0 boots.
	Bootable *bool `json:"bootable,omitempty"`
	// NBD marks a dom0 VBD plugged for an NBD connection.
	NBD bool `json:"nbd,omitempty"`
}

// VDI is a disk, a snapshot of one, cbt_metadata left by data_destroy, or
// an ISO.
type VDI struct {
	UUID         string            `json:"uuid"`
	NameLabel    string            `json:"name_label"`
	SR           string            `json:"sr"`
	Type         string            `json:"type"`
	VirtualSize  int64             `json:"virtual_size"`
	ReadOnly     bool              `json:"read_only"`
	IsSnapshot   bool              `json:"is_a_snapshot"`
	SnapshotOf   string            `json:"snapshot_of"`
	SnapshotTime time.Time         `json:"snapshot_time"`
	CBTEnabled   bool              `json:"cbt_enabled"`
	OtherConfig  map[string]string `json:"other_config"`
	// Chain lists the layers holding the data, top first; empty for
	// cbt_metadata and ISO VDIs.
	Chain []string `json:"chain"`
	// CBTChain names the CBT log this VDI belongs to ("" when it never
	// had CBT), and CBTEpoch its place in it: a live VDI records writes
	// into epoch CBTEpoch; a snapshot holds the disk as at the end of it.
	CBTChain string `json:"cbt_chain,omitempty"`
	CBTEpoch int    `json:"cbt_epoch,omitempty"`
}

// Session is a logged-in session.
type Session struct {
	UUID       string    `json:"uuid"`
	User       string    `json:"user"`
	Originator string    `json:"originator"`
	LastActive time.Time `json:"last_active"`
}

// Task is an Async call's task.
type Task struct {
	UUID      string    `json:"uuid"`
	NameLabel string    `json:"name_label"`
	Session   string    `json:"session"`
	Status    string    `json:"status"`
	Result    string    `json:"result"`
	ErrorInfo []string  `json:"error_info"`
	Created   time.Time `json:"created"`
	Finished  time.Time `json:"finished"`
	// PendingPolls is how many more polls find it pending; the outcome
	// waits in LaterResult and LaterError meanwhile.
	PendingPolls int      `json:"pending_polls,omitempty"`
	LaterResult  string   `json:"later_result,omitempty"`
	LaterError   []string `json:"later_error,omitempty"`
	// HTTP marks a task made by task.create: the HTTP handler given its
	// task_id finishes it, not a poll.
	HTTP bool `json:"http,omitempty"`
}

const (
	nullRef   = "OpaqueRef:NULL"
	refPrefix = "OpaqueRef:"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// newUUID returns a random (version 4) lowercase UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newRef returns a fresh object uuid and a ref; like xapi's, the ref is
// not made from the uuid, so a client cannot mix them up unnoticed.
func newRef() (uuid, ref string) {
	return newUUID(), refPrefix + newUUID()
}

// validRef reports whether s has the form of a ref xapi hands out.
func validRef(s string) bool {
	return len(s) == len(refPrefix)+36 && s[:len(refPrefix)] == refPrefix && uuidRE.MatchString(s[len(refPrefix):])
}
