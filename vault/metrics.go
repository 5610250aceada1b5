package vault

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cofferhq/coffer/internal/buildinfo"
)

// metrics are the server's Prometheus series. The tenant label is always the
// tenant ID, never a name or anything secret.
type metrics struct {
	requests        *prometheus.CounterVec   // route, method, code
	duration        *prometheus.HistogramVec // route
	tenantRequests  *prometheus.CounterVec   // tenant, route, code
	bytesIn         *prometheus.CounterVec   // tenant
	bytesOut        *prometheus.CounterVec   // tenant
	tenantErrors    *prometheus.CounterVec   // tenant, code
	uploadsInFlight *prometheus.GaugeVec     // tenant
	throttled       *prometheus.CounterVec   // tenant, reason
	quotaRefusals   *prometheus.CounterVec   // tenant
	digestMismatch  *prometheus.CounterVec   // tenant
	authFailures    *prometheus.CounterVec   // reason
	conns           *prometheus.GaugeVec     // state
	connsRefused    *prometheus.CounterVec   // reason
	storeRequests   *prometheus.CounterVec   // tenant, op
	directReads     *prometheus.CounterVec   // tenant
	directBytes     *prometheus.CounterVec   // tenant
}

func newMetrics(reg prometheus.Registerer, extra ...prometheus.Collector) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cofferd_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route"}),
		tenantRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_tenant_requests_total", Help: "Authenticated requests by tenant ID, route and status code.",
		}, []string{"tenant", "route", "code"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_tenant_bytes_in_total", Help: "Upload body bytes received, by tenant ID.",
		}, []string{"tenant"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_tenant_bytes_out_total", Help: "Response body bytes sent, by tenant ID.",
		}, []string{"tenant"}),
		tenantErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_tenant_errors_total", Help: "Error responses by tenant ID and error code.",
		}, []string{"tenant", "code"}),
		uploadsInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cofferd_tenant_uploads_in_flight", Help: "Uploads streaming now, by tenant ID.",
		}, []string{"tenant"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_throttled_total", Help: "Requests refused by a fairness limit, by tenant ID and reason.",
		}, []string{"tenant", "reason"}),
		quotaRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_quota_refusals_total", Help: "Uploads refused for quota, by tenant ID.",
		}, []string{"tenant"}),
		digestMismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_digest_mismatches_total", Help: "Uploads whose bytes did not match their name, by tenant ID.",
		}, []string{"tenant"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_auth_failures_total", Help: "Failed authentications by reason (error code).",
		}, []string{"reason"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cofferd_connections", Help: "Open agent API connections, by state (authenticated, unauthenticated).",
		}, []string{"state"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_connections_closed_total", Help: "Connections closed by the connection limits, by reason (full: refused at once; evicted: an idle unauthenticated one closed to make room).",
		}, []string{"reason"}),
		storeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_tenant_store_requests_total", Help: "Requests to the data store made while serving a tenant, by tenant ID and operation (put, get, stat, list, delete); a listing counts one per 1000 names.",
		}, []string{"tenant", "op"}),
		directReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_tenant_direct_downloads_total", Help: "Pack reads answered with a redirect to a presigned store URL (serve --direct-downloads), by tenant ID.",
		}, []string{"tenant"}),
		directBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_tenant_direct_download_bytes_total", Help: "Bytes of the pack reads redirected to the store, by tenant ID (they do not pass through cofferd).",
		}, []string{"tenant"}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "coffer_build_info", Help: "Always 1; the version label is the running build's version.",
	}, []string{"version"})
	buildInfo.WithLabelValues(buildinfo.Version()).Set(1)
	for _, c := range []prometheus.Collector{buildInfo, m.requests, m.duration, m.tenantRequests, m.bytesIn, m.bytesOut,
		m.tenantErrors, m.uploadsInFlight, m.throttled, m.quotaRefusals, m.digestMismatch, m.authFailures,
		m.conns, m.connsRefused, m.storeRequests, m.directReads, m.directBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, c := range extra {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// registerProcessCollectors adds the Go and process collectors to a registry
// the server created itself.
func registerProcessCollectors(reg prometheus.Registerer) {
	_ = reg.Register(collectors.NewGoCollector())
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
