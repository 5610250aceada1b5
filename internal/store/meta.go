package store

import "context"

// ObjectMeta is what a writer may tell a store about an object beyond its
// bytes. Only the vault client uses it: the vault cannot decrypt, so the
// agent reports a snapshot's sizes for the tenant's usage (logical bytes,
// hence the dedup ratio). Other stores ignore it.
type ObjectMeta struct {
	LogicalBytes int64 // the disks' sizes
	DataBytes    int64 // the non-zero bytes read
}

type objectMetaKey struct{}

// WithObjectMeta returns a context whose Puts carry m.
func WithObjectMeta(ctx context.Context, m ObjectMeta) context.Context {
	return context.WithValue(ctx, objectMetaKey{}, m)
}

// ObjectMetaFrom returns the metadata ctx carries, if any (for the vault
// client, which sends it with the Put).
func ObjectMetaFrom(ctx context.Context) (ObjectMeta, bool) {
	m, ok := ctx.Value(objectMetaKey{}).(ObjectMeta)
	return m, ok
}
