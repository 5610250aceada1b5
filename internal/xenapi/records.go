package xenapi

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Ref is a XenAPI object reference, "OpaqueRef:<uuid>".
type Ref string

// NullRef is the reference to nothing (an empty VBD's VDI, a VM that is no
// snapshot's SnapshotOf).
const NullRef Ref = "OpaqueRef:NULL"

// IsNull reports whether r is NullRef.
func (r Ref) IsNull() bool { return r == NullRef }

// VM is a VM record (VM.get_record). A snapshot has IsASnapshot and
// IsATemplate set; backup candidates have neither, nor IsControlDomain.
type VM struct {
	UUID              string            `json:"uuid"`
	NameLabel         string            `json:"name_label"`
	NameDescription   string            `json:"name_description"`
	PowerState        string            `json:"power_state"` // Halted, Paused, Running, Suspended
	IsATemplate       bool              `json:"is_a_template"`
	IsDefaultTemplate bool              `json:"is_default_template"`
	IsControlDomain   bool              `json:"is_control_domain"`
	IsASnapshot       bool              `json:"is_a_snapshot"`
	VBDs              []Ref             `json:"VBDs"`
	VIFs              []Ref             `json:"VIFs"`
	Snapshots         []Ref             `json:"snapshots"`
	Children          []Ref             `json:"children"`
	SnapshotOf        Ref               `json:"snapshot_of"`
	Parent            Ref               `json:"parent"`
	ResidentOn        Ref               `json:"resident_on"`
	SnapshotTime      time.Time         `json:"snapshot_time"` // 1970-01-01 when unset
	SnapshotInfo      map[string]string `json:"snapshot_info"`
	OtherConfig       map[string]string `json:"other_config"`
	BlockedOperations map[string]string `json:"blocked_operations"`
	Tags              []string          `json:"tags"`
	AllowedOperations []string          `json:"allowed_operations"`
	CurrentOperations map[string]string `json:"current_operations"`
	MemoryStaticMax   int64             `json:"memory_static_max"`
	MemoryStaticMin   int64             `json:"memory_static_min"`
	MemoryDynamicMax  int64             `json:"memory_dynamic_max"`
	MemoryDynamicMin  int64             `json:"memory_dynamic_min"`
	MemoryTarget      int64             `json:"memory_target"`
	VCPUsMax          int64             `json:"VCPUs_max"`
	VCPUsAtStartup    int64             `json:"VCPUs_at_startup"`
	Domid             int64             `json:"domid"`
}

// VBD is a VBD record: a VM's attachment of a VDI.
type VBD struct {
	UUID              string            `json:"uuid"`
	VM                Ref               `json:"VM"`
	VDI               Ref               `json:"VDI"` // NullRef when empty
	Device            string            `json:"device"`
	Userdevice        string            `json:"userdevice"`
	Bootable          bool              `json:"bootable"`
	Mode              string            `json:"mode"` // RO, RW
	Type              string            `json:"type"` // CD, Disk, Floppy
	Unpluggable       bool              `json:"unpluggable"`
	Empty             bool              `json:"empty"`
	CurrentlyAttached bool              `json:"currently_attached"`
	OtherConfig       map[string]string `json:"other_config"`
	AllowedOperations []string          `json:"allowed_operations"`
	CurrentOperations map[string]string `json:"current_operations"`
}

// VDI is a VDI record: a virtual disk.
type VDI struct {
	UUID                string            `json:"uuid"`
	NameLabel           string            `json:"name_label"`
	NameDescription     string            `json:"name_description"`
	Location            string            `json:"location"`
	SR                  Ref               `json:"SR"`
	VBDs                []Ref             `json:"VBDs"`
	Snapshots           []Ref             `json:"snapshots"`
	VirtualSize         int64             `json:"virtual_size"`
	PhysicalUtilisation int64             `json:"physical_utilisation"`
	Type                string            `json:"type"` // user, system, ..., cbt_metadata
	Sharable            bool              `json:"sharable"`
	ReadOnly            bool              `json:"read_only"`
	Managed             bool              `json:"managed"`
	Missing             bool              `json:"missing"`
	OtherConfig         map[string]string `json:"other_config"`
	SmConfig            map[string]string `json:"sm_config"`
	XenstoreData        map[string]string `json:"xenstore_data"`
	IsASnapshot         bool              `json:"is_a_snapshot"`
	CBTEnabled          bool              `json:"cbt_enabled"`
	SnapshotOf          Ref               `json:"snapshot_of"`
	SnapshotTime        time.Time         `json:"snapshot_time"`
	OnBoot              string            `json:"on_boot"`
	Tags                []string          `json:"tags"`
	AllowedOperations   []string          `json:"allowed_operations"`
	CurrentOperations   map[string]string `json:"current_operations"`
}

// SR is a storage repository record.
type SR struct {
	UUID                string            `json:"uuid"`
	NameLabel           string            `json:"name_label"`
	NameDescription     string            `json:"name_description"`
	VDIs                []Ref             `json:"VDIs"`
	PBDs                []Ref             `json:"PBDs"`
	VirtualAllocation   int64             `json:"virtual_allocation"`
	PhysicalUtilisation int64             `json:"physical_utilisation"`
	PhysicalSize        int64             `json:"physical_size"`
	Type                string            `json:"type"`
	ContentType         string            `json:"content_type"`
	Shared              bool              `json:"shared"`
	OtherConfig         map[string]string `json:"other_config"`
	SmConfig            map[string]string `json:"sm_config"`
}

// Host is a host record. Address is what HTTP transfers and NBD connect to.
type Host struct {
	UUID             string            `json:"uuid"`
	NameLabel        string            `json:"name_label"`
	NameDescription  string            `json:"name_description"`
	Hostname         string            `json:"hostname"`
	Address          string            `json:"address"`
	APIVersionMajor  int64             `json:"API_version_major"`
	APIVersionMinor  int64             `json:"API_version_minor"`
	APIVersionVendor string            `json:"API_version_vendor"`
	SoftwareVersion  map[string]string `json:"software_version"`
	Enabled          bool              `json:"enabled"`
	OtherConfig      map[string]string `json:"other_config"`
}

// Pool is the pool record (there is exactly one).
type Pool struct {
	UUID            string            `json:"uuid"`
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description"`
	Master          Ref               `json:"master"`
	DefaultSR       Ref               `json:"default_SR"`
	OtherConfig     map[string]string `json:"other_config"`
}

// Network is a network record; Purpose holds "nbd" or "insecure_nbd" on
// networks the NBD server listens on.
type Network struct {
	UUID            string            `json:"uuid"`
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description"`
	Bridge          string            `json:"bridge"`
	MTU             int64             `json:"MTU"`
	Purpose         []string          `json:"purpose"`
	PIFs            []Ref             `json:"PIFs"`
	VIFs            []Ref             `json:"VIFs"`
	OtherConfig     map[string]string `json:"other_config"`
}

// Task is a task record. Result is an XML-RPC value fragment.
type Task struct {
	UUID            string            `json:"uuid"`
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description"`
	Status          string            `json:"status"` // pending, success, failure, cancelling, cancelled
	Progress        float64           `json:"progress"`
	Result          string            `json:"result"`
	ErrorInfo       []string          `json:"error_info"`
	Created         time.Time         `json:"created"`
	Finished        time.Time         `json:"finished"`
	OtherConfig     map[string]string `json:"other_config"`
}

// NBDInfo is one way to reach a VDI over NBD (VDI.get_nbd_info): connect to
// Address:Port, verify the TLS certificate against Cert (PEM) with Subject
// as the host name, and ask for ExportName.
type NBDInfo struct {
	Address    string `json:"address"`
	Port       int64  `json:"port"`
	Cert       string `json:"cert"`
	Subject    string `json:"subject"`
	ExportName string `json:"exportname"`
}

// check validates an NBDInfo that came from the host.
func (n NBDInfo) check() error {
	switch {
	case !validHostName(n.Address):
		return fmt.Errorf("the NBD address %.80q is not a host name or IP address", n.Address)
	case n.Port < 1 || n.Port > 65535:
		return fmt.Errorf("the NBD port %d is out of range", n.Port)
	case n.ExportName == "" || len(n.ExportName) > 4096:
		return fmt.Errorf("the NBD export name is empty or too long")
	}
	return nil
}

// String prints the NBD endpoint without the export name's query, which
// holds the session reference.
func (n NBDInfo) String() string {
	name := n.ExportName
	if i := strings.IndexByte(name, '?'); i >= 0 {
		name = name[:i] + "?(redacted)"
	}
	return fmt.Sprintf("nbd://%s/%s (subject %q)", net.JoinHostPort(n.Address, strconv.FormatInt(n.Port, 10)), strings.TrimPrefix(name, "/"), n.Subject)
}

// GoString is String, so %#v redacts too.
func (n NBDInfo) GoString() string { return n.String() }

// Values of the enum fields Coffer compares against.
const (
	PowerStateHalted    = "Halted"
	PowerStateRunning   = "Running"
	PowerStatePaused    = "Paused"
	PowerStateSuspended = "Suspended"

	VBDTypeDisk = "Disk"
	VBDTypeCD   = "CD"

	VDITypeUser        = "user"
	VDITypeSystem      = "system"
	VDITypeCBTMetadata = "cbt_metadata"

	NetworkPurposeNBD         = "nbd"
	NetworkPurposeInsecureNBD = "insecure_nbd"
)
