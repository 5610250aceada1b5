package xapisim

import (
	"net/http"
	"strings"
)

// Handler serves xapi's HTTP interface over a state folder: JSON-RPC on
// POST /jsonrpc and the export/import handlers.
type Handler struct {
	Sim *Sim
	// NBD describes the NBD server for VDI.get_nbd_info; nil when there
	// is none (get_nbd_info answers []).
	NBD *NBDInfo
	// Logf logs the simulator's own failures; nil logs nothing. Secrets
	// never reach it.
	Logf func(format string, args ...any)
}

// NBDInfo is what VDI.get_nbd_info tells a client about the NBD server.
type NBDInfo struct {
	Address string
	Port    int
	CertPEM string
	Subject string
}

func (h *Handler) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

// ServeHTTP routes by path, longest prefix first, as xapi does.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/jsonrpc"):
		h.serveJSONRPC(w, r)
	case strings.HasPrefix(p, "/export_raw_vdi"):
		h.serveExportRaw(w, r)
	case strings.HasPrefix(p, "/import_raw_vdi"):
		h.serveImportRaw(w, r)
	case strings.HasPrefix(p, "/export_metadata"):
		h.serveExportMetadata(w, r)
	case strings.HasPrefix(p, "/import_metadata"):
		h.serveImportMetadata(w, r)
	default:
		http.NotFound(w, r)
	}
}

// nbdInfo is VDI.get_nbd_info: one entry while a network has purpose nbd
// and an NBD server runs.
func nbdInfo(c *call) (any, error) {
	out := []map[string]any{}
	nbd := false
	for _, n := range c.st.Networks {
		for _, p := range c.st.purposes(n) {
			nbd = nbd || p == "nbd"
		}
	}
	info := c.h.NBD
	if !nbd || info == nil {
		return out, nil
	}
	out = append(out, map[string]any{"exportname": "/" + c.vdi(0).UUID + "?session_id=" + c.session,
		"address": info.Address, "port": int64(info.Port), "cert": info.CertPEM, "subject": info.Subject})
	return out, nil
}
