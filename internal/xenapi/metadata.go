package xenapi

import (
	"archive/tar"
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// maxOVAXML caps the ova.xml MetadataVBDs reads.
const maxOVAXML = 16 << 20

// maxXMLDepth bounds the nesting of XML-RPC values MetadataVBDs accepts.
const maxXMLDepth = 32

// MetadataVBD is a VBD of the VM an export_metadata archive describes.
type MetadataVBD struct {
	Userdevice string
	Type       string // Disk, CD, Floppy
	VDI        string // the VDI's UUID; "" for an empty drive
}

// MetadataVBDs reads the VBDs of the VM in an export_metadata archive (a
// tar holding ova.xml, an XML-RPC value {version, objects: [{class, id,
// snapshot}]}), sorted by userdevice. An archive with other than one VM is
// refused.
func MetadataVBDs(archive []byte) ([]MetadataVBD, error) {
	doc, err := ovaXML(archive)
	if err != nil {
		return nil, err
	}
	top, err := parseXMLRPC(doc)
	if err != nil {
		return nil, fmt.Errorf("ova.xml: %w", err)
	}
	objs, ok := asMap(top)["objects"].([]any)
	if !ok {
		return nil, errors.New("ova.xml has no objects list")
	}
	byClass := map[string]map[string]map[string]any{}
	for i, o := range objs {
		m := asMap(o)
		class, _ := m["class"].(string)
		id, _ := m["id"].(string)
		snap, ok := m["snapshot"].(map[string]any)
		if class == "" || id == "" || !ok {
			return nil, fmt.Errorf("ova.xml: object %d lacks its class, id or record", i)
		}
		if byClass[class] == nil {
			byClass[class] = map[string]map[string]any{}
		}
		byClass[class][id] = snap
	}
	return metadataVBDs(byClass)
}

func metadataVBDs(byClass map[string]map[string]map[string]any) ([]MetadataVBD, error) {
	if n := len(byClass["VM"]); n != 1 {
		return nil, fmt.Errorf("ova.xml describes %d VMs, want 1", n)
	}
	var vmID string
	for id := range byClass["VM"] {
		vmID = id
	}
	var out []MetadataVBD
	for id, b := range byClass["VBD"] {
		if b["VM"] != vmID {
			continue
		}
		v := MetadataVBD{}
		v.Userdevice, _ = b["userdevice"].(string)
		v.Type, _ = b["type"].(string)
		if v.Userdevice == "" || v.Type == "" {
			return nil, fmt.Errorf("ova.xml: VBD %.80s has no userdevice or type", id)
		}
		if ref, _ := b["VDI"].(string); ref != "" && ref != string(NullRef) {
			vdi, ok := byClass["VDI"][ref]
			uuid, _ := vdi["uuid"].(string)
			if !ok || !ValidUUID(uuid) {
				return nil, fmt.Errorf("ova.xml: VBD %s's VDI %.80s is not described, or has no UUID", v.Userdevice, ref)
			}
			v.VDI = uuid
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b MetadataVBD) int {
		return cmp.Or(cmp.Compare(len(a.Userdevice), len(b.Userdevice)), strings.Compare(a.Userdevice, b.Userdevice))
	})
	return out, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// ovaXML returns the archive's ova.xml.
func ovaXML(archive []byte) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the metadata archive holds no ova.xml")
		}
		if err != nil {
			return nil, fmt.Errorf("the metadata archive is not a tar: %v", err)
		}
		if hdr.Name == "ova.xml" {
			return readCapped(tr, maxOVAXML)
		}
	}
}

// parseXMLRPC reads one XML-RPC <value>: strings (bare text, <string>,
// and numbers and dates kept as their text), booleans, arrays and
// structs.
func parseXMLRPC(doc []byte) (any, error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	start, err := nextStart(d)
	if err != nil {
		return nil, err
	}
	if start.Name.Local != "value" {
		return nil, fmt.Errorf("the document starts with <%.40s>, not <value>", start.Name.Local)
	}
	return parseValue(d, 0)
}

// nextStart skips to the next start element.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, fmt.Errorf("unexpected </%.40s>", t.Name.Local)
		}
	}
}

// parseValue reads the inside of a <value> whose start was read, and its
// end.
func parseValue(d *xml.Decoder, depth int) (any, error) {
	if depth > maxXMLDepth {
		return nil, errors.New("XML-RPC values nested too deep")
	}
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			return text.String(), nil
		case xml.StartElement:
			if strings.TrimSpace(text.String()) != "" {
				return nil, errors.New("text beside a typed XML-RPC value")
			}
			v, err := parseTyped(d, t, depth)
			if err != nil {
				return nil, err
			}
			return v, endOf(d, "value")
		}
	}
}

// parseTyped reads a typed element inside a <value>.
func parseTyped(d *xml.Decoder, t xml.StartElement, depth int) (any, error) {
	switch t.Name.Local {
	case "array":
		return parseArray(d, depth)
	case "struct":
		return parseStruct(d, depth)
	case "boolean":
		s, err := elementText(d)
		if err != nil || (s != "0" && s != "1") {
			return nil, fmt.Errorf("a boolean that is not 0 or 1")
		}
		return s == "1", nil
	case "string", "int", "i4", "i8", "double", "dateTime.iso8601":
		return elementText(d)
	}
	return nil, fmt.Errorf("an XML-RPC value of unknown type <%.40s>", t.Name.Local)
}

func parseArray(d *xml.Decoder, depth int) (any, error) {
	if s, err := nextStart(d); err != nil || s.Name.Local != "data" {
		return nil, errors.New("an <array> without <data>")
	}
	out := []any{}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "value" {
				return nil, fmt.Errorf("<%.40s> inside <data>", t.Name.Local)
			}
			v, err := parseValue(d, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case xml.EndElement:
			return out, endOf(d, "array")
		}
	}
}

func parseStruct(d *xml.Decoder, depth int) (any, error) {
	out := map[string]any{}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "member" {
				return nil, fmt.Errorf("<%.40s> inside <struct>", t.Name.Local)
			}
			if err := parseMember(d, out, depth); err != nil {
				return nil, err
			}
		case xml.EndElement:
			return out, nil
		}
	}
}

// parseMember reads <name>k</name><value>v</value></member>.
func parseMember(d *xml.Decoder, out map[string]any, depth int) error {
	if s, err := nextStart(d); err != nil || s.Name.Local != "name" {
		return errors.New("a <member> without <name>")
	}
	name, err := elementText(d)
	if err != nil {
		return err
	}
	if s, err := nextStart(d); err != nil || s.Name.Local != "value" {
		return fmt.Errorf("member %.40q has no <value>", name)
	}
	v, err := parseValue(d, depth+1)
	if err != nil {
		return err
	}
	out[name] = v
	return endOf(d, "member")
}

// elementText reads the text of an element whose start was read, and its
// end; child elements are refused.
func elementText(d *xml.Decoder) (string, error) {
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.StartElement:
			return "", fmt.Errorf("<%.40s> inside a scalar", t.Name.Local)
		case xml.EndElement:
			return b.String(), nil
		}
	}
}

// endOf skips white space up to the end element name.
func endOf(d *xml.Decoder, name string) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if t.Name.Local != name {
				return fmt.Errorf("</%.40s> where </%s> was expected", t.Name.Local, name)
			}
			return nil
		case xml.StartElement:
			return fmt.Errorf("<%.40s> where </%s> was expected", t.Name.Local, name)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("text where </%s> was expected", name)
			}
		}
	}
}
