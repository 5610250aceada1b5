package store

import (
	"errors"
	"testing"

	"github.com/minio/minio-go/v7"
)

// FuzzTranslateLockS3: whatever error a server answers a lock request
// with, the translation never panics, keeps the server's error reachable,
// names a bucket without Object Lock only for InvalidRequest, and makes
// that case permanent.
func FuzzTranslateLockS3(f *testing.F) {
	for _, s := range []struct {
		code, msg string
		status    int
	}{
		{"InvalidRequest", "Bucket is missing ObjectLockConfiguration", 400},
		{"InvalidRequest", "Bucket is missing Object Lock Configuration", 400},
		{"InvalidRequest", "Object is WORM protected and cannot be overwritten", 400},
		{"AccessDenied", "Access Denied because object protected by object lock.", 403},
		{"NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock configuration", 404},
		{"ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this bucket", 404},
		{"", "", 0}, {"SlowDown", "", 503},
	} {
		f.Add(s.code, s.msg, s.status)
	}
	f.Fuzz(func(t *testing.T, code, msg string, status int) {
		in := minio.ErrorResponse{Code: code, Message: msg, StatusCode: status}
		err := translateLockS3(in)
		if err == nil {
			t.Fatal("translateLockS3 lost the error")
		}
		_ = err.Error()
		if errors.Is(err, ErrNoObjectLock) {
			if code != "InvalidRequest" || !IsPermanent(err) {
				t.Fatalf("%q %q: ErrNoObjectLock from code %q, permanent %v", code, msg, code, IsPermanent(err))
			}
			return
		}
		var er minio.ErrorResponse
		if !errors.As(err, &er) || er.Code != code {
			t.Fatalf("%q %q: the server's error is not reachable: %v", code, msg, err)
		}
	})
}
