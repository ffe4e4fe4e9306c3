package mailfront

import (
	"context"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raisfs/raisfs/mailstore"
)

type metrics struct {
	reg        *prometheus.Registry
	sessions   prometheus.Gauge
	logins     *prometheus.CounterVec
	appends    *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	deliverDur prometheus.Histogram
	syncs      *prometheus.CounterVec
}

func newMetrics(store *mailstore.Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "rais", Subsystem: "imap", Name: "sessions",
			Help: "IMAP connections open now."}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rais", Subsystem: "imap", Name: "logins_total",
			Help: "IMAP logins by result (ok, failed, refused: clear text off loopback)."}, []string{"result"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rais", Subsystem: "imap", Name: "appends_total",
			Help: "IMAP APPENDs by result (ok, error)."}, []string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rais", Subsystem: "lmtp", Name: "recipients_total",
			Help: "LMTP recipients by result (delivered, unknown user, too large, failed: told to retry)."}, []string{"result"}),
		deliverDur: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "rais", Subsystem: "lmtp", Name: "delivery_seconds",
			Help: "Time to store and index one LMTP message for all its recipients.", Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14)}),
	}
	m.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rais", Subsystem: "imap", Name: "mailbox_reads_total",
		Help: "Index reads by sessions catching up with changes made elsewhere: only the entries changed since the session's version (changes), or the whole mailbox (full: select, or after an expunge)."}, []string{"kind"})
	m.reg.MustRegister(m.sessions, m.logins, m.appends, m.deliveries, m.deliverDur, m.syncs)
	counter := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "rais", Subsystem: "imap", Name: name, Help: help}, f))
	}
	counter("body_cache_hits_total", "Message bodies served from the front end's body cache.", func() float64 { return float64(store.CacheStats().Hits) })
	counter("body_cache_misses_total", "Message bodies read from the cluster (not in the body cache).", func() float64 { return float64(store.CacheStats().Misses) })
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "rais", Subsystem: "imap", Name: "body_cache_bytes",
		Help: "Bytes of message bodies in the body cache."}, func() float64 { return float64(store.CacheStats().Bytes) }))
	return m
}

// HTTPHandler serves /metrics (Prometheus), /debug/pprof/ and /healthz:
// 200 when the cluster answers a linearizable read within two seconds,
// 503 otherwise (for a load balancer in front of several front ends).
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			http.Error(w, "cluster unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
