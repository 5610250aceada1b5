package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Store is a flat namespace of immutable objects.
//
// Consistency the repository layer relies on, which every implementation must
// provide:
//   - Put is create-only and atomic: after it returns nil the whole object is
//     durably stored and visible to Get, Stat and List; a reader never sees a
//     partial object; if the name already exists Put fails with ErrExists and
//     the stored object is unchanged.
//   - Get of a stored object returns exactly the bytes put, at any offset.
//   - List returns every object whose Put returned before List started
//     (read-after-write and list-after-write consistency, as S3 gives since 2020).
//   - Delete of a missing object is not an error.
//
// Names are validated by ValidName; every method takes a context first.
type Store interface {
	// Put stores size bytes read from r under name. It may read r more than
	// once (a retry reads it again from offset 0).
	Put(ctx context.Context, name string, r io.ReaderAt, size int64) error
	// Get calls fn with a reader over length bytes of the object starting at
	// off (length < 0 means to the end). fn may be called again on retry, so
	// it must not keep state between calls it cannot redo.
	Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error
	// Stat returns the object's size.
	Stat(ctx context.Context, name string) (Info, error)
	// List calls fn for every object whose name starts with prefix, in no
	// particular order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// Delete removes the object.
	Delete(ctx context.Context, name string) error
	// Location describes the store for messages, without secrets.
	Location() string
	// Close releases resources.
	Close() error
}

// DeferredPutter is implemented by stores that can take an object's bytes
// at once and make the object durable later: the caller may reuse the
// source as soon as PutDeferred returns, while the store waits for the disk.
// The object is visible, and durable, only when commit returns nil; commit
// must be called exactly once, and with a cancelled context it discards the
// object.
type DeferredPutter interface {
	PutDeferred(ctx context.Context, name string, r io.ReaderAt, size int64) (commit func(context.Context) error, err error)
	// DefersPuts reports whether PutDeferred really returns before the
	// object is durable (decorators ask the store they wrap).
	DefersPuts() bool
}

// PutDeferred puts through s's DeferredPutter when it has one, and
// otherwise with Put and a commit that does nothing.
func PutDeferred(ctx context.Context, s Store, name string, r io.ReaderAt, size int64) (func(context.Context) error, error) {
	if d, ok := As[DeferredPutter](s); ok {
		return d.PutDeferred(ctx, name, r, size)
	}
	if err := s.Put(ctx, name, r, size); err != nil {
		return nil, err
	}
	return func(context.Context) error { return nil }, nil
}

// TempCleaner is a Store that can leave temporary files behind when a
// writer dies mid-put (a local directory), and can remove those of writers
// that are gone.
type TempCleaner interface {
	// RemoveStaleTemp removes temporary files no live writer holds and
	// says what it removed and what it left for a later run.
	RemoveStaleTemp(ctx context.Context) (TempReport, error)
}

// TempReport is what RemoveStaleTemp did.
type TempReport struct {
	Removed int   // temporary files of dead writers removed
	Bytes   int64 // their size
	// Young counts temporary files too recent to judge (see
	// Local.RemoveStaleTemp): a dead writer's, or a live one's, left for
	// a later run to look at again.
	Young int
}

// RemoveStaleTemp runs s's TempCleaner, found with As;
// a store without one (S3 writes nothing until a put completes) removes
// nothing.
func RemoveStaleTemp(ctx context.Context, s Store) (TempReport, error) {
	if c, ok := As[TempCleaner](s); ok {
		return c.RemoveStaleTemp(ctx)
	}
	return TempReport{}, nil
}

// DefersPuts reports whether PutDeferred on s returns before durability.
func DefersPuts(s Store) bool {
	d, ok := As[DeferredPutter](s)
	return ok && d.DefersPuts()
}

// Info describes one stored object.
type Info struct {
	Name string
	Size int64
	// ModTime is when the object was stored, by the store's clock (S3's
	// Last-Modified, the file's mtime); garbage collection's grace periods
	// are measured against it. Stat and List both fill it.
	ModTime time.Time
}

// Sentinel errors. Providers wrap their own errors so that errors.Is works
// with these; the retry layer retries anything that is not permanent.
var (
	ErrNotFound     = errors.New("object not found")
	ErrExists       = errors.New("object already exists")
	ErrDenied       = errors.New("access denied")
	ErrInvalidRange = errors.New("invalid range")
	ErrNoSpace      = errors.New("no space left on the store")
	ErrInvalidName  = errors.New("invalid object name")
)

// IsPermanent reports whether retrying err cannot help.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrDenied) ||
		errors.Is(err, ErrInvalidRange) || errors.Is(err, ErrNoSpace) || errors.Is(err, ErrInvalidName) ||
		errors.Is(err, ErrConflict) || errors.Is(err, ErrLocked) || errors.Is(err, ErrNoObjectLock) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, new(*PermanentError))
}

// PermanentError marks an error that must not be retried although it is none
// of the sentinels (a malformed request, a bad credential format, ...).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// MaxNameLen bounds object names.
const MaxNameLen = 256

// MaxSegmentLen bounds each slash-separated segment: the file-name limit of
// common file systems, so every valid name can be stored by Local.
const MaxSegmentLen = 255

// ValidName reports whether name is a safe object name: 1 to 256 characters
// of [a-z0-9._-] in segments of at most 255 separated by single slashes, no
// segment starting with a dot. Names come from the repository layer, but they
// are checked at the edge too, so no path trick ever reaches a file system or
// a bucket.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: %q", ErrInvalidName, truncate(name))
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg[0] == '.' || len(seg) > MaxSegmentLen {
			return fmt.Errorf("%w: %q", ErrInvalidName, truncate(name))
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("%w: %q", ErrInvalidName, truncate(name))
			}
		}
	}
	return nil
}

// validPrefix accepts "" or a name prefix (a valid name, possibly ending in "/").
// OrderedLister is a Store that lists names in byte order and can start
// after a given name (S3 does both), so that a caller paging through a large
// prefix does not list it from the start for every page.
type OrderedLister interface {
	// ListFrom calls fn, in byte order, for each object whose name starts
	// with prefix and sorts after after ("" lists from the start).
	ListFrom(ctx context.Context, prefix, after string, fn func(Info) error) error
}

// ValidPrefix checks a List prefix: "" or a valid name, with or without a
// trailing slash.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return ValidName(strings.TrimSuffix(prefix, "/"))
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ReadAll fetches a whole object into memory. It is meant for small objects
// (config, keys, indexes, snapshots); packs are read in ranges.
func ReadAll(ctx context.Context, s Store, name string) ([]byte, error) {
	var out []byte
	err := s.Get(ctx, name, 0, -1, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		out = b
		return err
	})
	return out, err
}

// ReadAllLimit is ReadAll for an object written by someone else: one of
// more than limit bytes is an error naming it, never read into memory.
func ReadAllLimit(ctx context.Context, s Store, name string, limit int64) ([]byte, error) {
	var out []byte
	err := s.Get(ctx, name, 0, -1, func(r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		if int64(len(b)) > limit {
			return fmt.Errorf("%s is larger than %d bytes", name, limit)
		}
		out = b
		return err
	})
	return out, err
}

// ReadRange fetches length bytes at off into memory.
func ReadRange(ctx context.Context, s Store, name string, off, length int64) ([]byte, error) {
	buf := make([]byte, length)
	err := s.Get(ctx, name, off, length, func(r io.Reader) error {
		_, err := io.ReadFull(r, buf)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: object ended before byte %d: %w", name, off+length, ErrInvalidRange)
		}
		return err
	})
	return buf, err
}

// GetEmpty serves a zero-length read at off of an object in st (a remote
// store whose ranged GET cannot express one): valid when off is at most the
// object's size.
func GetEmpty(ctx context.Context, st Store, name string, off, length int64, fn func(io.Reader) error) error {
	info, err := st.Stat(ctx, name)
	if err != nil {
		return err
	}
	if off > info.Size || length > 0 {
		return fmt.Errorf("%s: range %d+%d outside object of %d bytes: %w", name, off, length, info.Size, ErrInvalidRange)
	}
	if length < 0 && off != info.Size {
		// The object changed between the GET and the Stat: transient.
		return fmt.Errorf("%s: object changed while reading", name)
	}
	return fn(bytes.NewReader(nil))
}
