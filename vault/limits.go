package vault

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits are the fairness and size limits of one replica. New fills zero
// fields from DefaultLimits, except AuthCacheTTL, AuthFailCacheTTL and
// MinUploadRate, where 0 means "off".
type Limits struct {
	MaxObjectSize    int64         // largest pack accepted (default 300 MiB)
	TenantUploads    int           // concurrent uploads per tenant (4)
	TenantDownloads  int           // concurrent downloads per tenant (8)
	GlobalUploads    int           // concurrent uploads per replica (64)
	TenantRPS        float64       // requests per second per tenant (200)
	TenantBurst      int           // token bucket depth (400)
	SlotWait         time.Duration // how long a request waits for an upload or download slot (2s)
	MinUploadRate    int64         // bytes/s an upload must sustain per RateWindow (0: no floor)
	RateWindow       time.Duration // window of the upload floor (30s)
	AuthCacheTTL     time.Duration // how long an authentication is reused (0: never)
	AuthFailCacheTTL time.Duration // how long a refused credential is refused without asking the store (0: never)
	UploadRecheck    time.Duration // how often a streaming upload's credential is checked again (10s; also before the last bytes)
	AuthFailRPS      float64       // authentication failures per second per client IP (10)
	AuthFailBurst    int           // (20)
	AnonRPS          float64       // GET /v1/escrow per second per client IP (5)
	AnonBurst        int           // (20)
	EscrowCacheTTL   time.Duration // how long a found escrow recipient is reused (1m)
	IdleEvict        time.Duration // per-tenant limiter state dropped after this idle time (10m)
	SessionHeartbeat time.Duration // how often agents beat in an upload session (5m)

	// Connections of the agent API (applied by Server.Listener and
	// Server.HTTPServer).
	MaxConns       int           // open connections; more are closed at once (4096)
	MaxUnauthConns int           // of those, not yet authenticated (3/4 of MaxConns)
	HeaderTimeout  time.Duration // a request's headers, and the TLS handshake (10s)
	BodyTimeout    time.Duration // a request body other than an upload's (10s)
	IdleTimeout    time.Duration // a keep-alive connection between requests (2m: longer than the agent keeps one)
}

// DefaultLimits returns the documented defaults (design §6). The
// concurrency limits share a replica's bandwidth between tenants; the
// request rate only stops floods of cheap requests, so it sits well above
// what one agent needs at full speed: a restore at 1 GB/s in 8 MiB ranges
// would read about 125 a second (it reads longer ones now). At 50 per
// second, a lone restore of the benchmark disk met 40 refusals and stalled
// for a second.
func DefaultLimits() Limits {
	return Limits{
		MaxObjectSize: 300 << 20, TenantUploads: 4, TenantDownloads: 8, GlobalUploads: 64,
		TenantRPS: 200, TenantBurst: 400, SlotWait: 2 * time.Second,
		MinUploadRate: 32 << 10, RateWindow: 30 * time.Second, AuthCacheTTL: 2 * time.Second, AuthFailCacheTTL: 10 * time.Second,
		UploadRecheck: 10 * time.Second, AnonRPS: 5, AnonBurst: 20, EscrowCacheTTL: time.Minute,
		AuthFailRPS: 10, AuthFailBurst: 20, IdleEvict: 10 * time.Minute, SessionHeartbeat: 5 * time.Minute,
		MaxConns: 4096, HeaderTimeout: 10 * time.Second, BodyTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxObjectSize <= 0 {
		l.MaxObjectSize = d.MaxObjectSize
	}
	if l.TenantUploads <= 0 {
		l.TenantUploads = d.TenantUploads
	}
	if l.SessionHeartbeat <= 0 {
		l.SessionHeartbeat = d.SessionHeartbeat
	}
	if l.TenantDownloads <= 0 {
		l.TenantDownloads = d.TenantDownloads
	}
	if l.GlobalUploads <= 0 {
		l.GlobalUploads = d.GlobalUploads
	}
	if l.TenantRPS <= 0 {
		l.TenantRPS = d.TenantRPS
	}
	if l.TenantBurst <= 0 {
		l.TenantBurst = d.TenantBurst
	}
	if l.SlotWait <= 0 {
		l.SlotWait = d.SlotWait
	}
	if l.RateWindow <= 0 {
		l.RateWindow = d.RateWindow
	}
	if l.AuthFailRPS <= 0 {
		l.AuthFailRPS = d.AuthFailRPS
	}
	if l.AuthFailBurst <= 0 {
		l.AuthFailBurst = d.AuthFailBurst
	}
	if l.IdleEvict <= 0 {
		l.IdleEvict = d.IdleEvict
	}
	if l.UploadRecheck <= 0 {
		l.UploadRecheck = d.UploadRecheck
	}
	if l.AnonRPS <= 0 || l.AnonBurst <= 0 {
		l.AnonRPS, l.AnonBurst = d.AnonRPS, d.AnonBurst
	}
	if l.EscrowCacheTTL <= 0 {
		l.EscrowCacheTTL = d.EscrowCacheTTL
	}
	return l.connDefaults(d)
}

func (l Limits) connDefaults(d Limits) Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxUnauthConns <= 0 || l.MaxUnauthConns > l.MaxConns {
		l.MaxUnauthConns = max(1, l.MaxConns*3/4)
	}
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = d.HeaderTimeout
	}
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = d.BodyTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	return l
}

type tenantLimits struct {
	rate     *rate.Limiter
	up, down chan struct{}
	lastUsed time.Time
}

// limiter keeps the per-tenant token buckets and slots, the global upload
// slots and the per-IP authentication failure buckets.
type limiter struct {
	lim    Limits
	now    func() time.Time
	global chan struct{}

	mu        sync.Mutex
	tenants   map[string]*tenantLimits
	authFails map[string]*ipBucket
	anon      map[string]*ipBucket // unauthenticated requests that cost a lookup, per IP
	lastSweep time.Time
}

type ipBucket struct {
	rate     *rate.Limiter
	lastUsed time.Time
}

func newLimiter(lim Limits, now func() time.Time) *limiter {
	return &limiter{
		lim: lim, now: now, global: make(chan struct{}, lim.GlobalUploads),
		tenants: map[string]*tenantLimits{}, authFails: map[string]*ipBucket{}, anon: map[string]*ipBucket{}, lastSweep: now(),
	}
}

func (l *limiter) tenant(id string) *tenantLimits {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	t := l.tenants[id]
	if t == nil {
		t = &tenantLimits{
			rate: rate.NewLimiter(rate.Limit(l.lim.TenantRPS), l.lim.TenantBurst),
			up:   make(chan struct{}, l.lim.TenantUploads), down: make(chan struct{}, l.lim.TenantDownloads),
		}
		l.tenants[id] = t
	}
	t.lastUsed = now
	return t
}

// sweep drops idle per-tenant and per-address state. The caller holds l.mu.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) <= time.Minute {
		return
	}
	l.lastSweep = now
	for k, t := range l.tenants {
		if now.Sub(t.lastUsed) > l.lim.IdleEvict && len(t.up) == 0 && len(t.down) == 0 {
			delete(l.tenants, k)
		}
	}
	for _, m := range []map[string]*ipBucket{l.authFails, l.anon} {
		for k, b := range m {
			if now.Sub(b.lastUsed) > l.lim.IdleEvict {
				delete(m, k)
			}
		}
	}
}

// allow takes one token from the tenant's bucket; when none is available it
// returns how long to wait and takes nothing.
func (l *limiter) allow(tenantID string) (ok bool, wait time.Duration) {
	t := l.tenant(tenantID)
	r := t.rate.ReserveN(l.now(), 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(l.now()); d > 0 {
		r.CancelAt(l.now())
		return false, d
	}
	return true, 0
}

// acquire takes a slot from ch, waiting up to wait; it reports whether it got one.
func acquire(ctx context.Context, ch chan struct{}, wait time.Duration) bool {
	select {
	case ch <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case ch <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func release(ch chan struct{}) { <-ch }

// jitterRetry returns 2-4 s for refused slots.
func jitterRetry() time.Duration {
	return 2*time.Second + time.Duration(rand.Int64N(int64(2*time.Second)))
}

// authFailure records one failed authentication from ip. It reports false,
// and how long to wait, when ip had already used up its failure budget.
func (l *limiter) authFailure(ip string) (ok bool, wait time.Duration) {
	return l.take(l.authFails, ip, l.lim.AuthFailRPS, l.lim.AuthFailBurst)
}

// anonymous takes one token of ip's bucket for unauthenticated requests
// (GET /v1/escrow); it reports false, and how long to wait, when it is empty.
func (l *limiter) anonymous(ip string) (ok bool, wait time.Duration) {
	return l.take(l.anon, ip, l.lim.AnonRPS, l.lim.AnonBurst)
}

// take takes one token of ip's bucket in m, made with rps and burst.
func (l *limiter) take(m map[string]*ipBucket, ip string, rps float64, burst int) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	b := m[ip]
	if b == nil {
		b = &ipBucket{rate: rate.NewLimiter(rate.Limit(rps), burst)}
		m[ip] = b
	}
	b.lastUsed = now
	r := b.rate.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, max(time.Second, d)
	}
	return true, 0
}
