package store

import (
	"context"
	"time"
)

// UploadSessions is a store whose garbage collector must know which
// backups are running (a vault): packs marked after a live session began
// are kept, so a backup that runs longer than the collector's grace loses
// nothing it may still name.
type UploadSessions interface {
	BeginUpload(ctx context.Context) (*UploadSession, error)
}

// UploadSession is a running backup as the store knows it.
type UploadSession struct {
	ID        string
	Started   time.Time
	Heartbeat time.Duration // beat at least this often
	// Unusable are the IDs (hex) of packs a backup must not deduplicate
	// against: the collector has marked, condemned or deleted them.
	Unusable []string
	// Beat tells the store the session is alive; End ends it.
	Beat func(ctx context.Context) error
	End  func(ctx context.Context) error
}

// BeginUpload implements UploadSessions, retrying a transient failure (a
// vault that throttles) as every other request; the session's heartbeats
// are not retried (the next beat is).
func (r *Retry) BeginUpload(ctx context.Context) (*UploadSession, error) {
	us, _ := As[UploadSessions](r.Store)
	var s *UploadSession
	err := r.do(ctx, "begin upload session", "", func() error {
		var err error
		s, err = us.BeginUpload(ctx)
		return err
	})
	return s, err
}

// BeginUpload implements UploadSessions.
func (c *Counting) BeginUpload(ctx context.Context) (*UploadSession, error) {
	us, _ := As[UploadSessions](c.Store)
	return us.BeginUpload(ctx)
}

// BeginUpload implements UploadSessions: a bandwidth limit changes nothing
// of the session.
func (w *Bandwidthed) BeginUpload(ctx context.Context) (*UploadSession, error) {
	us, _ := As[UploadSessions](w.Store)
	return us.BeginUpload(ctx)
}
