package xapisim

import (
	"archive/tar"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxOVA caps ova.xml in an import_metadata archive.
const maxOVA = 4 << 20

// ovaVM is what import_metadata takes from ova.xml: the VM and its VBDs.
type ovaVM struct {
	UUID        string
	NameLabel   string
	Description string
	Memory      int64 // memory_static_max, 0 when not recorded
	VCPUs       int64 // VCPUs_max, 0 when not recorded
	// HVM is set when the VM boots HVM (HVM_boot_policy not empty): it
	// has qemu, so an attached CD whose ISO is missing can be ejected.
	HVM  bool
	VBDs []ovaVBD
}

// ovaVBD is a VBD of the archive; VDI is the VDI's uuid, "" when empty.
type ovaVBD struct {
	UserDevice string
	Bootable   bool
	Mode       string
	Type       string
	VDI        string
	Attached   bool // currently_attached when exported
}

// xrValue is an XML-RPC value as xapi writes ova.xml: bare text is a
// string (ints are written so), or one typed element.
type xrValue struct {
	Text    string    `xml:",chardata"`
	String  *string   `xml:"string"`
	Int     *string   `xml:"int"`
	I4      *string   `xml:"i4"`
	Boolean *string   `xml:"boolean"`
	Double  *string   `xml:"double"`
	Array   *xrArray  `xml:"array"`
	Struct  *xrStruct `xml:"struct"`
}

type xrArray struct {
	Values []xrValue `xml:"data>value"`
}

type xrStruct struct {
	Members []struct {
		Name  string  `xml:"name"`
		Value xrValue `xml:"value"`
	} `xml:"member"`
}

// field returns a struct's member, or nil.
func (s *xrStruct) field(name string) *xrValue {
	if s == nil {
		return nil
	}
	for i := range s.Members {
		if s.Members[i].Name == name {
			return &s.Members[i].Value
		}
	}
	return nil
}

// str is a scalar's text; ok is false for arrays and structs.
func (v *xrValue) str() (string, bool) {
	if v == nil || v.Array != nil || v.Struct != nil {
		return "", false
	}
	for _, p := range []*string{v.String, v.Int, v.I4, v.Double, v.Boolean} {
		if p != nil {
			return *p, true
		}
	}
	return v.Text, true
}

// readOVATar returns the ova.xml of an export_metadata archive.
func readOVATar(archive []byte) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the archive holds no ova.xml")
		}
		if err != nil {
			return nil, fmt.Errorf("the archive is not a tar: %v", err)
		}
		if hdr.Name != "ova.xml" {
			continue
		}
		if hdr.Size > maxOVA {
			return nil, fmt.Errorf("ova.xml has %d bytes, more than the %d the simulator reads", hdr.Size, maxOVA)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxOVA))
		if err != nil {
			return nil, fmt.Errorf("ova.xml: %v", err)
		}
		return b, nil
	}
}

// parseOVA reads the one VM of ova.xml, its VBDs and their VDIs' uuids.
func parseOVA(doc []byte) (*ovaVM, error) {
	var top xrValue
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	if err := d.Decode(&top); err != nil {
		return nil, fmt.Errorf("ova.xml is not an XML-RPC value: %v", err)
	}
	objs := top.Struct.field("objects")
	if objs == nil || objs.Array == nil {
		return nil, errors.New("ova.xml has no objects array")
	}
	byClass := map[string]map[string]*xrStruct{}
	for i, o := range objs.Array.Values {
		class, _ := o.Struct.field("class").str()
		id, _ := o.Struct.field("id").str()
		snap := o.Struct.field("snapshot")
		if class == "" || id == "" || snap == nil || snap.Struct == nil {
			return nil, fmt.Errorf("object %d of ova.xml lacks its class, id or snapshot record", i)
		}
		if byClass[class] == nil {
			byClass[class] = map[string]*xrStruct{}
		}
		byClass[class][id] = snap.Struct
	}
	return ovaObjects(byClass)
}

// ovaObjects builds the VM from the archive's objects by class and id.
func ovaObjects(byClass map[string]map[string]*xrStruct) (*ovaVM, error) {
	if len(byClass["VM"]) != 1 {
		return nil, fmt.Errorf("ova.xml describes %d VMs; the simulator imports exactly one", len(byClass["VM"]))
	}
	var vmID string
	var rec *xrStruct
	for id, r := range byClass["VM"] {
		vmID, rec = id, r
	}
	vm := &ovaVM{}
	vm.UUID, _ = rec.field("uuid").str()
	vm.NameLabel, _ = rec.field("name_label").str()
	vm.Description, _ = rec.field("name_description").str()
	policy, _ := rec.field("HVM_boot_policy").str()
	vm.HVM = policy != ""
	if !uuidRE.MatchString(vm.UUID) {
		return nil, fmt.Errorf("the VM's uuid %.60q is not a UUID", vm.UUID)
	}
	var err error
	if vm.Memory, err = optInt(rec, "memory_static_max"); err != nil {
		return nil, err
	}
	if vm.VCPUs, err = optInt(rec, "VCPUs_max"); err != nil {
		return nil, err
	}
	for id, b := range byClass["VBD"] {
		if owner, _ := b.field("VM").str(); owner != vmID {
			continue
		}
		vbd, err := ovaVBDOf(b, byClass["VDI"])
		if err != nil {
			return nil, fmt.Errorf("VBD %.80s: %w", id, err)
		}
		vm.VBDs = append(vm.VBDs, vbd)
	}
	return vm, nil
}

// optInt reads an int field that may be missing; present, it must be a
// non-negative integer.
func optInt(rec *xrStruct, name string) (int64, error) {
	f := rec.field(name)
	if f == nil {
		return 0, nil
	}
	s, _ := f.str()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("the VM's %s %.40q is not a non-negative integer", name, s)
	}
	return n, nil
}

func ovaVBDOf(b *xrStruct, vdis map[string]*xrStruct) (ovaVBD, error) {
	var v ovaVBD
	v.UserDevice, _ = b.field("userdevice").str()
	v.Mode, _ = b.field("mode").str()
	v.Type, _ = b.field("type").str()
	boot, _ := b.field("bootable").str()
	v.Bootable = boot == "1" || boot == "true"
	attached, _ := b.field("currently_attached").str()
	v.Attached = attached == "1" || attached == "true"
	n, err := strconv.Atoi(v.UserDevice)
	switch {
	case err != nil || n < 0 || n > 255:
		return v, fmt.Errorf("userdevice %.20q is not a device number", v.UserDevice)
	case v.Mode != "RO" && v.Mode != "RW":
		return v, fmt.Errorf("mode %.20q is neither RO nor RW", v.Mode)
	case v.Type != "Disk" && v.Type != "CD" && v.Type != "Floppy":
		return v, fmt.Errorf("type %.20q is not Disk, CD or Floppy", v.Type)
	}
	ref, _ := b.field("VDI").str()
	if ref == "" || ref == nullRef {
		return v, nil
	}
	rec := vdis[ref]
	if rec == nil {
		return v, fmt.Errorf("its VDI %.80s is not among the archive's objects", ref)
	}
	v.VDI, _ = rec.field("uuid").str()
	if !uuidRE.MatchString(v.VDI) {
		return v, fmt.Errorf("its VDI's uuid %.60q is not a UUID", v.VDI)
	}
	return v, nil
}
