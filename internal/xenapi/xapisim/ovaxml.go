package xapisim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// ovaXML is export_metadata's ova.xml: {version, objects: [{class, id,
// snapshot: record}]} as one XML-RPC value.
func (st *State) ovaXML(vmRef string) []byte {
	var objs []any
	add := func(class, ref string) {
		objs = append(objs, map[string]any{"class": class, "id": ref, "snapshot": st.recordOf(class, ref)})
	}
	add("VM", vmRef)
	srs := map[string]bool{}
	for _, b := range st.vbdsOf(vmRef) {
		add("VBD", b)
		if v := st.VDIs[st.VBDs[b].VDI]; v != nil {
			add("VDI", st.VBDs[b].VDI)
			srs[v.SR] = true
		}
	}
	for _, sr := range slices.Sorted(maps.Keys(srs)) {
		add("SR", sr)
	}
	doc := map[string]any{
		"version": map[string]any{"hostname": st.Host.NameLabel, "date": "2026-01-01", "product_version": "8.4.0",
			"product_brand": "XenServer", "build_number": "xapisim", "xapi_major": int64(24), "xapi_minor": int64(19),
			"export_vsn": int64(2)},
		"objects": objs,
	}
	var buf bytes.Buffer
	writeXMLRPC(&buf, doc)
	return buf.Bytes()
}

// writeXMLRPC writes v as an XML-RPC value the way xapi marshals its
// types: ints as strings, sets as arrays, maps and records as structs.
func writeXMLRPC(buf *bytes.Buffer, v any) {
	buf.WriteString("<value>")
	switch x := v.(type) {
	case string:
		_ = xml.EscapeText(buf, []byte(x))
	case bool:
		b := "0"
		if x {
			b = "1"
		}
		buf.WriteString("<boolean>" + b + "</boolean>")
	case int64:
		buf.WriteString(strconv.FormatInt(x, 10))
	case float64:
		buf.WriteString("<double>" + strconv.FormatFloat(x, 'g', -1, 64) + "</double>")
	case []string:
		writeArray(buf, len(x), func(i int) any { return x[i] })
	case []any:
		writeArray(buf, len(x), func(i int) any { return x[i] })
	case map[string]string:
		writeStruct(buf, slices.Sorted(maps.Keys(x)), func(k string) any { return x[k] })
	case map[string]any:
		writeStruct(buf, slices.Sorted(maps.Keys(x)), func(k string) any { return x[k] })
	default:
		_ = xml.EscapeText(buf, []byte(fmt.Sprint(x)))
	}
	buf.WriteString("</value>")
}

func writeArray(buf *bytes.Buffer, n int, at func(int) any) {
	buf.WriteString("<array><data>")
	for i := range n {
		writeXMLRPC(buf, at(i))
	}
	buf.WriteString("</data></array>")
}

func writeStruct(buf *bytes.Buffer, keys []string, at func(string) any) {
	buf.WriteString("<struct>")
	for _, k := range keys {
		buf.WriteString("<member><name>")
		_ = xml.EscapeText(buf, []byte(k))
		buf.WriteString("</name>")
		writeXMLRPC(buf, at(k))
		buf.WriteString("</member>")
	}
	buf.WriteString("</struct>")
}
