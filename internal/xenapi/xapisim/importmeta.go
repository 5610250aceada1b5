package xapisim

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// maxMetadataBody caps an import_metadata body.
const maxMetadataBody = 16 << 20

// metadataImport is a parsed PUT /import_metadata: the VM and the flags.
type metadataImport struct {
	vm      *ovaVM
	vdiMap  map[string]string // original VDI uuid -> the uuid to attach
	restore bool
	dryRun  bool
}

// serveImportMetadata is PUT /import_metadata: it makes the VM an
// export_metadata archive describes, halted, with its VBDs attached to the
// VDIs the vdi:<uuid>=<uuid> map names (or to the VDI with the archive's
// uuid when not mapped). restore=false (the default) gives new uuids;
// restore=true keeps the VM's; dry_run=true checks and makes nothing. The
// task (task_id) ends with the set of new VM refs.
func (h *Handler) serveImportMetadata(w http.ResponseWriter, r *http.Request) {
	task := r.URL.Query().Get("task_id")
	if r.Method != http.MethodPut {
		http.Error(w, "405 import_metadata wants PUT", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength < 0 || len(r.TransferEncoding) > 0 {
		http.Error(w, "411 import_metadata needs a Content-Length", http.StatusLengthRequired)
		return
	}
	imp, status, msg := readMetadataImport(r)
	var res importResult
	if status != 0 {
		res = importResult{status: status, code: errImport, msg: msg}
	}
	var refs []string
	err := h.Sim.Update(func(st *State) error {
		if _, ok := h.httpSession(w, r, st); !ok {
			res.status = -1
			return nil
		}
		if res.status == 0 {
			refs, res = st.importMetadata(imp)
		}
		return nil
	})
	switch {
	case err != nil:
		h.finishHTTPTask(task, "", []string{errInternal, err.Error()})
		http.Error(w, "500 "+err.Error(), http.StatusInternalServerError)
	case res.status < 0:
	case res.status > 0:
		h.finishHTTPTask(task, "", []string{res.code, res.msg})
		http.Error(w, res.msg, res.status)
	default:
		h.finishHTTPTaskRaw(task, refSet(refs))
		w.WriteHeader(http.StatusOK)
	}
}

// readMetadataImport reads and checks the body and the query.
func readMetadataImport(r *http.Request) (*metadataImport, int, string) {
	if r.ContentLength > maxMetadataBody {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("413 the archive (%d bytes) is larger than %d", r.ContentLength, maxMetadataBody)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
	if err != nil || int64(len(body)) != r.ContentLength {
		return nil, http.StatusBadRequest, "400 the body is shorter than its Content-Length"
	}
	ova, err := readOVATar(body)
	if err != nil {
		return nil, http.StatusBadRequest, "400 " + err.Error()
	}
	vm, err := parseOVA(ova)
	if err != nil {
		return nil, http.StatusBadRequest, "400 " + err.Error()
	}
	imp := &metadataImport{vm: vm, vdiMap: map[string]string{}}
	q := r.URL.Query()
	if imp.restore, err = boolParam(q, "restore"); err == nil {
		imp.dryRun, err = boolParam(q, "dry_run")
	}
	if err == nil {
		_, err = boolParam(q, "force")
	}
	if err == nil {
		err = vdiMapOf(q, imp.vdiMap)
	}
	if err != nil {
		return nil, http.StatusBadRequest, "400 " + err.Error()
	}
	return imp, 0, ""
}

func boolParam(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	b, err := strconv.ParseBool(q.Get(name))
	if err != nil {
		return false, fmt.Errorf("%s=%.20q is not true or false", name, q.Get(name))
	}
	return b, nil
}

// vdiMapOf reads the vdi:<uuid>=<uuid> parameters.
func vdiMapOf(q url.Values, out map[string]string) error {
	for k, vs := range q {
		from, ok := strings.CutPrefix(k, "vdi:")
		if !ok {
			continue
		}
		if len(vs) != 1 || !uuidRE.MatchString(from) || !uuidRE.MatchString(vs[0]) {
			return fmt.Errorf("the VDI map entry %.60q is not vdi:<uuid>=<uuid>", k)
		}
		out[from] = vs[0]
	}
	return nil
}

// importMetadata finds each VBD's VDI and makes the VM. As xapi does, a
// VBD whose VDI the pool lacks fails the import when it was attached
// (unless it is a CD of an HVM VM), and otherwise a CD or floppy is made
// empty and a disk is left out.
func (st *State) importMetadata(imp *metadataImport) ([]string, importResult) {
	vdis := make([]string, len(imp.vm.VBDs))
	for i, b := range imp.vm.VBDs {
		vdis[i] = st.importedVDI(imp, b)
		if vdis[i] == "" && b.Attached && !(b.Type == "CD" && imp.vm.HVM) {
			return nil, importResult{status: http.StatusNotFound, code: errImportDisksMissing,
				msg: fmt.Sprintf("404 the archive's VBD %s was attached to VDI %s, which the pool does not have (map it with vdi:<uuid>=<uuid>)", b.UserDevice, b.VDI)}
		}
	}
	uuid, ref := newRef()
	if imp.restore {
		uuid = imp.vm.UUID
		for _, o := range st.VMs {
			if o.UUID == uuid {
				return nil, importResult{status: http.StatusConflict, code: errImport, msg: "409 restore=true: a VM with uuid " + uuid + " exists"}
			}
		}
	}
	if imp.dryRun {
		return nil, importResult{}
	}
	if _, fail := st.Switches[SwitchMetadataFail]; fail {
		return nil, importResult{status: http.StatusInternalServerError, code: errImport,
			msg: "500 the import failed (xapisim switch metadata-fail)"}
	}
	st.VMs[ref] = &VM{UUID: uuid, NameLabel: imp.vm.NameLabel, NameDescription: imp.vm.Description, PowerState: "Halted",
		Tags: []string{}, OtherConfig: map[string]string{}, BlockedOps: map[string]string{}, Memory: imp.vm.Memory, VCPUs: imp.vm.VCPUs}
	for i, b := range imp.vm.VBDs {
		if vdis[i] == "" && b.Type == "Disk" {
			continue // xapi leaves out a disk it cannot find
		}
		if vdis[i] == "" {
			vdis[i] = nullRef // ejected
		}
		bu, bref := newRef()
		st.VBDs[bref] = &VBD{UUID: bu, VM: ref, VDI: vdis[i], UserDevice: b.UserDevice, Type: b.Type, Mode: b.Mode,
			Bootable: &imp.vm.VBDs[i].Bootable}
	}
	return []string{ref}, importResult{}
}

// importedVDI is the ref of the VDI a VBD of the archive gets: nullRef
// for an empty drive, "" when the pool lacks it.
func (st *State) importedVDI(imp *metadataImport, b ovaVBD) string {
	if b.VDI == "" {
		return nullRef
	}
	target := b.VDI
	if to, ok := imp.vdiMap[b.VDI]; ok {
		target = to
	}
	ref := st.vdiByRefOrUUID(target)
	if ref == "" || st.VDIs[ref].Type == "cbt_metadata" {
		return ""
	}
	return ref
}

// refSet is an XML-RPC array of refs, as xapi stores a set in a task's
// result.
func refSet(refs []string) string {
	var b strings.Builder
	b.WriteString("<value><array><data>")
	for _, r := range slices.Sorted(slices.Values(refs)) {
		b.WriteString("<value>" + html.EscapeString(r) + "</value>")
	}
	b.WriteString("</data></array></value>")
	return b.String()
}
