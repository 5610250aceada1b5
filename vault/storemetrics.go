package vault

import (
	"context"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhq/coffer/internal/store"
)

// Store operations as cofferd_tenant_store_requests_total counts them.
const (
	storeOpPut    = "put"
	storeOpGet    = "get"
	storeOpStat   = "stat"
	storeOpList   = "list"
	storeOpDelete = "delete"
)

// tenantStore counts the requests the vault makes to its data store on a
// tenant's behalf (cofferd_tenant_store_requests_total), by the tenant of
// the API request being served (from its context) and the operation.
// Calls made for no tenant (the health probe) are not counted. A listing
// counts one request per 1000 names, as S3 pages it. It passes
// OrderedLister through, the one capability the server asks of its data
// store.
type tenantStore struct {
	store.Store
	requests *prometheus.CounterVec // tenant, op
}

func (t *tenantStore) count(ctx context.Context, op string) {
	if info := reqInfoFrom(ctx); info != nil && info.tenant != "" {
		t.requests.WithLabelValues(info.tenant, op).Inc()
	}
}

// Unwrap implements store.Wrapper.
func (t *tenantStore) Unwrap() store.Store { return t.Store }

func (t *tenantStore) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	t.count(ctx, storeOpPut)
	return t.Store.Put(ctx, name, r, size)
}

func (t *tenantStore) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	t.count(ctx, storeOpGet)
	return t.Store.Get(ctx, name, off, length, fn)
}

func (t *tenantStore) Stat(ctx context.Context, name string) (store.Info, error) {
	t.count(ctx, storeOpStat)
	return t.Store.Stat(ctx, name)
}

func (t *tenantStore) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	t.count(ctx, storeOpList)
	return t.Store.List(ctx, prefix, t.pages(ctx, fn))
}

// ListFrom implements store.OrderedLister.
func (t *tenantStore) ListFrom(ctx context.Context, prefix, after string, fn func(store.Info) error) error {
	ol, ok := store.As[store.OrderedLister](t.Store)
	if !ok {
		return &store.PermanentError{Err: fmt.Errorf("store %s cannot list in order", t.Location())}
	}
	t.count(ctx, storeOpList)
	return ol.ListFrom(ctx, prefix, after, t.pages(ctx, fn))
}

func (t *tenantStore) pages(ctx context.Context, fn func(store.Info) error) func(store.Info) error {
	n := 0
	return func(i store.Info) error {
		if n++; n%1000 == 0 {
			t.count(ctx, storeOpList)
		}
		return fn(i)
	}
}

func (t *tenantStore) Delete(ctx context.Context, name string) error {
	t.count(ctx, storeOpDelete)
	return t.Store.Delete(ctx, name)
}
