package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
)

// ReadVersioned implements Swapper. The version is the object's ETag.
func (s *S3) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	if err := ValidName(name); err != nil {
		return nil, "", err
	}
	body, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, s.key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("%s: get: %w", name, translateS3(err))
	}
	defer body.Close()
	if info.Size > max {
		return nil, "", tooLarge(name, max)
	}
	if info.ETag == "" {
		return nil, "", &PermanentError{Err: fmt.Errorf("%s: the server sent no ETag, so conditional writes cannot work", name)}
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(&exactReader{r: body, left: info.Size, name: name}, max+1)); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), info.ETag, nil
}

// Swap implements Swapper with one conditional PUT: If-Match: "<etag>" to
// replace, If-None-Match: * to create. The server evaluates the condition
// under its object lock (MinIO, also distributed; AWS S3 since 2024-11), so
// the PUT is an atomic compare-and-swap. 412, a 404 for If-Match (the object
// is gone) and 409 ConditionalRequestConflict (AWS, a concurrent conditional
// write) are ErrConflict.
func (s *S3) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	if ifVersion == "*" || strings.ContainsAny(ifVersion, "\"\r\n") {
		// No ETag looks like this; "*" would mean "any version".
		return "", fmt.Errorf("%s: version %q was not issued by this store: %w", name, truncate(ifVersion), ErrConflict)
	}
	if int64(len(b)) > MaxS3ObjectSize {
		return "", &PermanentError{Err: fmt.Errorf("%s: %d bytes is too large", name, len(b))}
	}
	opts := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: true,
	}
	if ifVersion == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifVersion)
	}
	info, err := s.client.PutObject(ctx, s.cfg.Bucket, s.key(name), bytes.NewReader(b), int64(len(b)), opts)
	if err != nil {
		return "", fmt.Errorf("%s: swap: %w", name, swapError(err, ifVersion != ""))
	}
	if info.ETag == "" {
		return "", &PermanentError{Err: fmt.Errorf("%s: the server sent no ETag, so conditional writes cannot work", name)}
	}
	return info.ETag, nil
}

// swapError maps a failed conditional PUT: lost conditions become
// ErrConflict, everything else goes through translateS3.
func swapError(err error, ifMatch bool) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		conflict := er.Code == "PreconditionFailed" || er.StatusCode == http.StatusPreconditionFailed ||
			er.Code == "ConditionalRequestConflict" ||
			(ifMatch && er.Code != "NoSuchBucket" && (er.Code == "NoSuchKey" || er.StatusCode == http.StatusNotFound))
		if conflict {
			return fmt.Errorf("%w (%s, HTTP %d)", ErrConflict, er.Code, er.StatusCode)
		}
	}
	return translateS3(err)
}
