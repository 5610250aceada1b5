package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// S3 Object Lock. A bucket made with Object Lock keeps versions: a PUT to a
// key adds a version and a DELETE without a version only adds a delete
// marker, while the locked version stays. So with S3Config.ObjectLock,
// Delete lists the key's versions and deletes each by its version ID
// (freeing the space), and the server refuses a version under retention
// (AccessDenied), which Delete reports as a *LockedError. Coffer never sends
// the governance bypass header, so governance locks hold against its own
// credential as compliance locks do.

// bucketLockHelp says how to get a bucket that can lock objects.
const bucketLockHelp = "Object Lock can only be turned on when a bucket is made: create a new bucket with it " +
	"(mc mb --with-lock ALIAS/BUCKET, or aws s3api create-bucket --object-lock-enabled-for-bucket) and use that, or run without --object-lock"

// checkObjectLock checks, when the store is configured for Object Lock,
// that the bucket has an Object Lock configuration.
func (s *S3) checkObjectLock(ctx context.Context) error {
	if !s.cfg.ObjectLock {
		return nil
	}
	enabled, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.cfg.Bucket)
	if err == nil && enabled == "Enabled" {
		return nil
	}
	var er minio.ErrorResponse
	if err == nil || errors.As(err, &er) && (er.Code == "ObjectLockConfigurationNotFoundError" || isNoLockConfig(er)) {
		return &PermanentError{Err: fmt.Errorf("bucket %q at %s: %w. %s", s.cfg.Bucket, s.Location(), ErrNoObjectLock, bucketLockHelp)}
	}
	return fmt.Errorf("reading the object lock configuration of bucket %q at %s: %w", s.cfg.Bucket, s.Location(), translateS3(err))
}

// isNoLockConfig recognises the refusal of a lock request in a bucket
// without Object Lock (MinIO and AWS answer 400 InvalidRequest).
func isNoLockConfig(er minio.ErrorResponse) bool {
	m := strings.ToLower(er.Message)
	return er.Code == "InvalidRequest" && (strings.Contains(m, "objectlock") || strings.Contains(m, "object lock"))
}

// translateLockS3 is translateS3 that recognises a bucket without Object
// Lock.
func translateLockS3(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) && isNoLockConfig(er) {
		return &PermanentError{Err: fmt.Errorf("%w: %s. %s", ErrNoObjectLock, er.Message, bucketLockHelp)}
	}
	return translateS3(err)
}

func s3Mode(m LockMode) minio.RetentionMode {
	if m == LockCompliance {
		return minio.Compliance
	}
	return minio.Governance
}

func lockMode(m minio.RetentionMode) LockMode {
	switch strings.ToUpper(string(m)) {
	case string(minio.Compliance):
		return LockCompliance
	case string(minio.Governance):
		return LockGovernance
	}
	return LockNone
}

// lockSecond rounds a retain-until date up to a whole second, as S3 stores
// it, so that a date read back compares equal to the one set.
func lockSecond(t time.Time) time.Time {
	r := t.UTC().Truncate(time.Second)
	if r.Before(t) {
		r = r.Add(time.Second)
	}
	return r
}

// PutLocked implements Locker: one PUT with the retention headers
// (x-amz-object-lock-mode, x-amz-object-lock-retain-until-date).
func (s *S3) PutLocked(ctx context.Context, name string, r io.ReaderAt, size int64, lock Lock) error {
	if lock.Mode != LockNone {
		lock.Until = lockSecond(lock.Until)
	}
	return s.put(ctx, name, r, size, lock)
}

// LockInfo implements Locker with GetObjectRetention of the current
// version.
func (s *S3) LockInfo(ctx context.Context, name string) (Lock, error) {
	if err := ValidName(name); err != nil {
		return Lock{}, err
	}
	return s.versionLock(ctx, name, "")
}

func (s *S3) versionLock(ctx context.Context, name, version string) (Lock, error) {
	mode, until, err := s.client.GetObjectRetention(ctx, s.cfg.Bucket, s.key(name), version)
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && (er.Code == "NoSuchObjectLockConfiguration" || isNoLockConfig(er)) {
			return Lock{}, nil // no retention on the object, or none possible in the bucket
		}
		return Lock{}, fmt.Errorf("%s: reading its lock: %w", name, translateS3(err))
	}
	if mode == nil || until == nil || lockMode(*mode) == LockNone {
		return Lock{}, nil
	}
	return Lock{Mode: lockMode(*mode), Until: until.UTC()}, nil
}

// ExtendLock implements Locker: LockInfo, then PutObjectRetention only
// when the lock ends before lock.Until.
func (s *S3) ExtendLock(ctx context.Context, name string, lock Lock) (bool, error) {
	cur, err := s.LockInfo(ctx, name)
	if err != nil {
		return false, err
	}
	until := lockSecond(lock.Until)
	if !until.After(cur.Until) {
		return false, nil
	}
	mode := cur.Mode
	if mode == LockNone {
		mode = lock.Mode
	}
	if mode == LockNone {
		return false, &PermanentError{Err: fmt.Errorf("%s: cannot lock it without a mode (governance or compliance)", name)}
	}
	m := s3Mode(mode)
	err = s.client.PutObjectRetention(ctx, s.cfg.Bucket, s.key(name), minio.PutObjectRetentionOptions{Mode: &m, RetainUntilDate: &until})
	if err == nil {
		return true, nil
	}
	err = translateLockS3(err)
	if errors.Is(err, ErrDenied) {
		// A concurrent extension to a later date makes ours a shortening,
		// which the server refuses: fine if the lock now runs long enough.
		if now, lerr := s.LockInfo(ctx, name); lerr == nil && !until.After(now.Until) {
			return false, nil
		}
	}
	return false, fmt.Errorf("%s: extending its lock to %s: %w", name, until.Format(time.RFC3339), err)
}

// deleteVersions deletes every version (and delete marker) of name. A
// version under retention is left and reported as a *LockedError once the
// others are gone.
func (s *S3) deleteVersions(ctx context.Context, name string) error {
	versions, err := s.versions(ctx, name)
	if err != nil {
		return err
	}
	var locked error
	for _, v := range versions {
		err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(name), minio.RemoveObjectOptions{VersionID: v})
		if err == nil {
			continue
		}
		err = translateS3(err)
		if errors.Is(err, ErrNotFound) && !isNoSuchBucket(err) {
			continue // deleted meanwhile
		}
		// A locked version is refused with AccessDenied (AWS) or
		// InvalidRequest "WORM protected" (MinIO): ask its lock to tell.
		if l, lerr := s.versionLock(ctx, name, v); lerr == nil && l.Mode != LockNone {
			if locked == nil {
				locked = &LockedError{Name: name, Lock: l}
			}
			continue
		}
		return fmt.Errorf("%s: delete: %w", name, err)
	}
	return locked
}

// versions lists the version IDs of exactly name, delete markers included.
func (s *S3) versions(ctx context.Context, name string) ([]string, error) {
	key := s.key(name)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ids []string
	for obj := range s.client.ListObjects(lctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true, Recursive: true}) {
		if obj.Err != nil {
			err := translateS3(obj.Err)
			return nil, fmt.Errorf("%s: listing its versions: %w", name, err)
		}
		if obj.Key == key {
			ids = append(ids, obj.VersionID)
		}
	}
	return ids, ctx.Err()
}
