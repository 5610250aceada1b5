package vault

import (
	"context"
	"errors"
	"fmt"
	lru "github.com/hashicorp/golang-lru/v2"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
)

// Principal is the authenticated caller of a request: the tenant comes only
// from the credential.
type Principal struct {
	TenantID     string
	TenantName   string
	CredentialID string
	// Suspended tenants are refused every request with SuspendedMessage.
	Suspended        bool
	SuspendedMessage string
	// Record is the authenticator's own tenant record (for the Ledger of
	// the same backend, e.g. *registry.Tenant); the server never reads it.
	Record any
}

// Authenticator checks a bearer credential. Refusals are *Error or
// *vaultapi.Error values (401 invalid_credential, credential_revoked); any
// other error is answered 503 store_unavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer vaultapi.Secret) (*Principal, error)
}

// Enroller exchanges an enrollment token for a credential (POST /v1/enroll).
type Enroller interface {
	Enroll(ctx context.Context, req vaultapi.EnrollRequest) (*vaultapi.EnrollResponse, error)
}

// TenantSource answers GET /v1/tenant.
type TenantSource interface {
	TenantInfo(ctx context.Context, tenantID string) (*vaultapi.TenantInfo, error)
}

// ObjectMeta is what an agent reports with a snapshot upload (the vault
// cannot measure it: it cannot decrypt).
type ObjectMeta struct{ LogicalBytes, DataBytes int64 }

// Ledger accounts usage. Reserve refuses with an error that Is
// store.ErrNoSpace when the quota would be exceeded (its text is shown to the
// user), or with ErrBusy when another upload of the same name is active.
type Ledger interface {
	Reserve(ctx context.Context, p *Principal, name string, kind vaultapi.Kind, size int64, meta ObjectMeta, ttl time.Duration) (Reservation, error)
}

// Reservation is one upload's claim on the quota.
type Reservation interface {
	Commit(ctx context.Context) error
	Release(ctx context.Context) error
}

// Escrow is optional: GET /v1/escrow and POST /v1/escrow/slot. Recipient
// returns an error that Is store.ErrNotFound when no escrow key exists.
type Escrow interface {
	EscrowRecipient(ctx context.Context) (recipient, fingerprint string, err error)
	RecordEscrowSlot(ctx context.Context, tenantID, slot string) error
}

// Config builds a Server.
type Config struct {
	// Data holds tenant objects at repos/<tenant id>/<name>. It must not be
	// Retry-wrapped: an upload body streams once.
	Data store.Store
	Auth Authenticator
	// Enroller, Tenants, Ledger and Escrow may be nil: enrollment and
	// tenant info then answer 503, no usage is accounted, escrow is 404.
	Enroller Enroller
	Tenants  TenantSource
	Ledger   Ledger
	Escrow   Escrow
	// Seeds, if set, serves the signing-key route and seed registration
	// (they need the tenant's record); nil: they answer 503.
	Seeds  SeedRegistry
	Limits Limits
	// Direct, when enabled, answers large pack reads with a redirect to a
	// presigned URL of the store (Data must offer store.Presigner).
	Direct DirectDownloads
	Log    *slog.Logger
	// Registerer receives the metrics; nil makes a private registry with
	// the Go and process collectors. Gatherer serves MetricsHandler (nil:
	// Registerer if it is a Gatherer, else prometheus.DefaultGatherer).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Collectors are registered beside the server's own metrics (cofferd
	// serve's StatusCollector).
	Collectors []prometheus.Collector
	Clock      clock.Clock
	// Probe checks the store for /healthz; nil stats vault/format (a
	// missing object counts as reachable).
	Probe func(ctx context.Context) error
}

// Server is the vault's HTTP API. It is safe for concurrent use.
type Server struct {
	data    store.Store
	auth    Authenticator
	enroll  Enroller
	tenants TenantSource
	ledger  Ledger
	escrow  Escrow
	seeds   SeedRegistry
	packs   *jobs.SeedPacks // the pack sets of registered seeds
	lim     Limits
	direct  DirectDownloads
	presign store.Presigner // Data's, when direct downloads are on
	limits  *limiter
	log     *slog.Logger
	m       *metrics
	gather  prometheus.Gatherer
	clock   clock.Clock
	probe   func(ctx context.Context) error
	cache   *authCache
	sizes   *lru.Cache[string, store.Info] // size and time of content-named objects, which never change
	state   store.Swapper                  // the data store's compare-and-swap (GC state), or nil

	draining atomic.Bool
	healthMu sync.Mutex
	healthAt time.Time
	healthOK error

	failCache *ttlCache[*Error] // refused credentials and tokens
	conns     *connLimiter
	escrows   escrowCache
}

// New checks cfg and builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Data == nil {
		return nil, errors.New("vault: Config.Data is required")
	}
	if cfg.Auth == nil {
		return nil, errors.New("vault: Config.Auth is required")
	}
	s := &Server{
		data: cfg.Data, auth: cfg.Auth, enroll: cfg.Enroller, tenants: cfg.Tenants, ledger: cfg.Ledger,
		escrow: cfg.Escrow, seeds: cfg.Seeds, lim: cfg.Limits.withDefaults(), log: cfg.Log, clock: cfg.Clock, probe: cfg.Probe,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	var err error
	if s.sizes, err = lru.New[string, store.Info](sizeCacheEntries); err != nil {
		return nil, err
	}
	s.clock = clock.Or(s.clock)
	if s.direct = cfg.Direct.withDefaults(); s.direct.Enabled {
		p, ok := store.As[store.Presigner](cfg.Data)
		if !ok {
			return nil, fmt.Errorf("vault: direct downloads need a store that presigns URLs (s3://); %s cannot", cfg.Data.Location())
		}
		s.presign = p
	}
	reg := cfg.Registerer
	s.gather = cfg.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		registerProcessCollectors(r)
		reg, s.gather = r, r
	}
	if s.gather == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			s.gather = g
		} else {
			s.gather = prometheus.DefaultGatherer
		}
	}
	m, err := newMetrics(reg, cfg.Collectors...)
	if err != nil {
		return nil, fmt.Errorf("vault: registering metrics: %w", err)
	}
	s.m = m
	// The GC state of receipts and upload sessions is swapped in the same
	// store, below the per-tenant counting.
	s.state, _ = store.As[store.Swapper](s.data)
	s.data = &tenantStore{Store: s.data, requests: m.storeRequests}
	s.packs = jobs.NewSeedPacks(s.data)
	if s.probe == nil {
		s.probe = func(ctx context.Context) error {
			_, err := s.data.Stat(ctx, "vault/format")
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
	}
	s.limits = newLimiter(s.lim, s.now)
	s.cache = newAuthCache(s.lim.AuthCacheTTL, s.now)
	s.failCache = newTTLCache[*Error](s.lim.AuthFailCacheTTL, s.now)
	s.conns = newConnLimiter(s.lim.MaxConns, s.lim.MaxUnauthConns, s.m)
	return s, nil
}

func (s *Server) now() time.Time { return s.clock.Now() }

// Handler is the agent API, sanitiser outermost.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.outer) }

// MetricsHandler serves /metrics and /healthz for the metrics listener.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", s.Handler())
	return mux
}

// Drain makes /healthz answer 503 draining, so a load balancer stops sending
// new requests before the HTTP server shuts down. Requests are still served.
func (s *Server) Drain() { s.draining.Store(true) }

// route dispatches a sanitised path.
func (s *Server) route(w http.ResponseWriter, r *http.Request, path, query string) {
	if query != "" && path != vaultapi.RouteList {
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadPath, "malformed request path: no query parameters are accepted on %s", path))
		return
	}
	switch {
	case strings.HasPrefix(path, vaultapi.RouteRepo):
		s.handleRepo(w, r, strings.TrimPrefix(path, vaultapi.RouteRepo))
	case path == vaultapi.RouteList:
		if !allowMethods(w, r, http.MethodGet) {
			return
		}
		s.handleList(w, r, query)
	case path == vaultapi.RouteEnroll:
		if !allowMethods(w, r, http.MethodPost) {
			return
		}
		s.handleEnroll(w, r)
	case path == vaultapi.RouteTenant:
		if !allowMethods(w, r, http.MethodGet) {
			return
		}
		s.handleTenant(w, r)
	case path == vaultapi.RouteEscrow:
		if !allowMethods(w, r, http.MethodGet) {
			return
		}
		s.handleEscrow(w, r)
	case path == vaultapi.RouteEscrowSlot:
		if !allowMethods(w, r, http.MethodPost) {
			return
		}
		s.handleEscrowSlot(w, r)
	case path == vaultapi.RouteSession || strings.HasPrefix(path, vaultapi.RouteSession+"/"):
		s.handleSession(w, r, path)
	case path == vaultapi.RouteSigningKey:
		if !allowMethods(w, r, http.MethodPost) {
			return
		}
		s.handleSigningKey(w, r)
	case path == vaultapi.RouteSeeds || strings.HasPrefix(path, vaultapi.RouteSeeds+"/"):
		s.handleSeeds(w, r, path)
	case path == vaultapi.RouteHealthz:
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		s.handleHealth(w, r)
	default:
		writeError(w, r, Errorf(http.StatusNotFound, vaultapi.CodeNotFound, "no such route: %s", path))
	}
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, r, Errorf(http.StatusMethodNotAllowed, vaultapi.CodeMethodNotAllowed, "method %s not allowed here (allowed: %s)", methodLabel(r.Method), strings.Join(methods, ", ")))
	return false
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, r, Errorf(http.StatusServiceUnavailable, vaultapi.CodeDraining, "cofferd is shutting down"))
		return
	}
	s.healthMu.Lock()
	if s.healthAt.IsZero() || s.now().Sub(s.healthAt) > 10*time.Second {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		s.healthOK = s.probe(ctx)
		cancel()
		s.healthAt = s.now()
	}
	err := s.healthOK
	s.healthMu.Unlock()
	if err != nil {
		s.log.Warn("store probe failed", "err", err)
		writeError(w, r, Errorf(http.StatusServiceUnavailable, vaultapi.CodeStoreUnreachable, "the store is unreachable"))
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// apiError turns an error from a collaborator into an answer. Unknown errors
// are logged and answered 503 store_unavailable, without their text.
func (s *Server) apiError(r *http.Request, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ve *vaultapi.Error
	if errors.As(err, &ve) {
		st := ve.Status
		if st == 0 {
			st = vaultapi.StatusOf(ve.Code)
		}
		return &Error{Status: st, Code: ve.Code, Message: ve.Message}
	}
	id := ""
	if info := reqInfoFrom(r.Context()); info != nil {
		id = info.id
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return Errorf(http.StatusBadRequest, vaultapi.CodeTruncated, "the client went away")
	}
	s.log.Warn("backend error", "req_id", id, "err", err)
	return &Error{Status: http.StatusServiceUnavailable, Code: vaultapi.CodeStoreUnavailable,
		Message: "the vault's store is unavailable; retry later", RetryAfter: 5 * time.Second}
}
