package uploader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/store"
)

// gcSession is the backup's upload session with a vault's garbage
// collector: begun before the first chunk is deduplicated, kept alive by
// heartbeats, ended when the backup ends. Packs the collector has marked
// or deleted are dropped from the index first, so no snapshot names them.
type gcSession struct {
	us   *store.UploadSession
	stop context.CancelFunc
	done chan struct{}
}

// beginGCSession starts the session when the store has a collector.
func (s *Session) beginGCSession(ctx context.Context) error {
	uss, ok := store.As[store.UploadSessions](s.r.Store())
	if !ok {
		return nil
	}
	us, err := uss.BeginUpload(ctx)
	if errors.Is(err, store.ErrNotFound) {
		// A vault older than upload sessions: its operator runs no
		// garbage collection that could need one.
		s.info.Warnings = append(s.info.Warnings, "the vault does not know upload sessions (an older cofferd); backing up without one")
		return nil
	}
	if err != nil {
		return fmt.Errorf("starting the upload session: %w", err)
	}
	ids := make([]pack.ID, 0, len(us.Unusable))
	for _, h := range us.Unusable {
		id, err := pack.ParseID(h)
		if err != nil {
			return fmt.Errorf("the vault names an unusable pack %q: %w", h, err)
		}
		ids = append(ids, id)
	}
	s.info.UnusablePacks = len(ids)
	s.info.ForgottenChunks = s.r.Index.ForgetPacks(ids)
	bctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	g := &gcSession{us: us, stop: stop, done: make(chan struct{})}
	go s.beat(bctx, g)
	s.gc = g
	return nil
}

// beat keeps the session alive until it is stopped; a failed beat is
// retried at the next one (the session lives for an hour without one).
// Heartbeats pace I/O on the wall clock, whatever clock the session's
// decisions use (a test's moves it in jumps).
func (s *Session) beat(ctx context.Context, g *gcSession) {
	defer close(g.done)
	every := max(g.us.Heartbeat, time.Second)
	for clock.Real.Sleep(ctx, every) == nil {
		bctx, cancel := context.WithTimeout(ctx, every)
		_ = g.us.Beat(bctx)
		cancel()
	}
}

// endGCSession stops the heartbeats and ends the session.
func (s *Session) endGCSession(ctx context.Context) {
	g := s.gc
	if g == nil {
		return
	}
	s.gc = nil
	g.stop()
	<-g.done
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = g.us.End(ectx)
}
