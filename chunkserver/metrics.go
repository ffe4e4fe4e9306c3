package chunkserver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the chunk server's Prometheus metrics. Each Store has its own
// registry (no global state), served by the Server on /metrics.
type metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec   // op, code
	latency      *prometheus.HistogramVec // op
	bytesIn      prometheus.Counter
	bytesOut     prometheus.Counter
	fsyncs       prometheus.Counter
	fsyncBatch   prometheus.Histogram
	fsyncSeconds prometheus.Histogram
	corrupt      prometheus.Counter
	scrubBytes   prometheus.Counter
	scrubPasses  prometheus.Counter
}

func newMetrics(s *Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "requests_total",
			Help: "Data API requests by operation and HTTP status code.",
		}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "request_seconds",
			Help:    "Data API request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"op"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "put_bytes_total",
			Help: "Blob bytes stored by successful puts.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "get_bytes_total",
			Help: "Blob bytes served by gets.",
		}),
		fsyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "fsyncs_total",
			Help: "Group-commit fsyncs of volume data files.",
		}),
		fsyncBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "fsync_batch_records",
			Help:    "Records made durable by one group-commit fsync.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "fsync_seconds",
			Help:    "Duration of group-commit fsyncs.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rais", Subsystem: "chunkserver", Name: "corrupt_needles_total",
			Help: "Needles that failed verification on read or compaction.",
		}),
	}
	m.scrubBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "rais", Subsystem: "chunkserver", Name: "scrub_bytes_total",
		Help: "Needle bytes re-read and verified by the scrubber.",
	})
	m.scrubPasses = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "rais", Subsystem: "chunkserver", Name: "scrub_passes_total",
		Help: "Scrub passes completed over every volume.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.bytesIn, m.bytesOut, m.fsyncs, m.fsyncBatch, m.fsyncSeconds, m.corrupt, m.scrubBytes, m.scrubPasses)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "rais", Subsystem: "chunkserver", Name: "stored_bytes",
		Help: "Needle bytes of live blobs.",
	}, func() float64 { return float64(s.totals().liveBytes) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "rais", Subsystem: "chunkserver", Name: "stored_blobs",
		Help: "Live blobs.",
	}, func() float64 { return float64(s.totals().liveBlobs) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "rais", Subsystem: "chunkserver", Name: "volumes",
		Help: "Volumes loaded.",
	}, func() float64 { return float64(s.totals().volumes) }))
	return m
}
