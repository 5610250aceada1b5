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

// BeginUpload implements UploadSessions.
func (r *Retry) BeginUpload(ctx context.Context) (*UploadSession, error) {
	us, _ := As[UploadSessions](r.Store)
	return us.BeginUpload(ctx)
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
