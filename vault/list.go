package vault

import (
	"container/heap"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

type listQuery struct {
	prefix, after string
	limit         int
}

// parseListQuery parses the raw query strictly: only prefix, after and
// limit, each at most once.
func parseListQuery(raw string) (listQuery, *Error) {
	q := listQuery{limit: vaultapi.DefaultListLimit}
	seen := map[string]bool{}
	bad := func(f string, a ...any) (listQuery, *Error) {
		return listQuery{}, Errorf(http.StatusBadRequest, vaultapi.CodeBadRequest, f, a...)
	}
	if raw == "" {
		return q, nil
	}
	for _, part := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(part, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return bad("malformed query string")
		}
		if seen[key] {
			return bad("query parameter %q given twice", clipString(key))
		}
		seen[key] = true
		switch key {
		case "prefix":
			q.prefix = val
		case "after":
			q.after = val
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > vaultapi.MaxListLimit {
				return bad("limit must be an integer in 1..%d", vaultapi.MaxListLimit)
			}
			q.limit = n
		default:
			return bad("unknown query parameter %q (want prefix, after, limit)", clipString(key))
		}
	}
	if err := vaultapi.ValidListPrefix(q.prefix); err != nil {
		return listQuery{}, Errorf(http.StatusBadRequest, vaultapi.CodeBadPrefix, "%v", err)
	}
	if err := vaultapi.ValidListAfter(q.prefix, q.after); err != nil {
		return listQuery{}, Errorf(http.StatusBadRequest, vaultapi.CodeBadPrefix, "%v", err)
	}
	return q, nil
}

// nameHeap is a max-heap of names: it keeps the smallest ones.
type nameHeap []vaultapi.ObjectInfo

func (h nameHeap) Len() int           { return len(h) }
func (h nameHeap) Less(i, j int) bool { return h[i].Name > h[j].Name }
func (h nameHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nameHeap) Push(x any)        { *h = append(*h, x.(vaultapi.ObjectInfo)) }
func (h *nameHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

var errPageFull = errors.New("page full")

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, rawQuery string) {
	q, e := parseListQuery(rawQuery)
	if e != nil {
		writeError(w, r, e)
		return
	}
	p := s.admit(w, r)
	if p == nil {
		return
	}
	base := objectKey(p.TenantID, "")
	want := q.limit + 1
	var objs []vaultapi.ObjectInfo
	accept := func(fi store.Info) (vaultapi.ObjectInfo, bool) {
		name, ok := strings.CutPrefix(fi.Name, base)
		if !ok || !strings.HasPrefix(name, q.prefix) || name <= q.after {
			return vaultapi.ObjectInfo{}, false
		}
		if _, err := vaultapi.ParseRepoName(name); err != nil {
			return vaultapi.ObjectInfo{}, false
		}
		return vaultapi.ObjectInfo{Name: name, Size: fi.Size, Modified: fi.ModTime.UTC()}, true
	}
	var err error
	// A store that lists in order from a starting point (S3) serves a page
	// from where the last one ended; any other lists everything under the
	// prefix and keeps the limit+1 smallest names.
	if ol, ok := store.As[store.OrderedLister](s.data); ok {
		after := ""
		if q.after != "" {
			after = base + q.after
		}
		err = ol.ListFrom(r.Context(), base+q.prefix, after, func(fi store.Info) error {
			if o, ok := accept(fi); ok {
				objs = append(objs, o)
				if len(objs) >= want {
					return errPageFull
				}
			}
			return nil
		})
	} else {
		h := &nameHeap{}
		err = s.data.List(r.Context(), base+q.prefix, func(fi store.Info) error {
			o, ok := accept(fi)
			if !ok {
				return nil
			}
			if h.Len() < want {
				heap.Push(h, o)
			} else if o.Name < (*h)[0].Name {
				(*h)[0] = o
				heap.Fix(h, 0)
			}
			return nil
		})
		objs = *h
		sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	}
	if err != nil && !errors.Is(err, errPageFull) {
		writeError(w, r, s.apiError(r, err))
		return
	}
	page := vaultapi.ListPage{Objects: objs}
	if len(objs) > q.limit {
		page.Objects = objs[:q.limit]
		page.Next = page.Objects[q.limit-1].Name
	}
	if page.Objects == nil {
		page.Objects = []vaultapi.ObjectInfo{}
	}
	writeJSON(w, r, http.StatusOK, page)
}
