package master

import (
	"net/http"
	"net/http/pprof"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

type metrics struct {
	reg          *prometheus.Registry
	applySeconds prometheus.Histogram
	forwarded    prometheus.Counter
	puts         prometheus.Counter
	dedups       prometheus.Counter
	badReplicas  prometheus.Counter
	readBarriers *prometheus.CounterVec

	watchInvalidations prometheus.Counter

	underReplicated prometheus.Gauge
	repairs         *prometheus.CounterVec
	repairBytes     prometheus.Counter
	compactions     prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rais", Subsystem: "master", Name: "commit_seconds",
			Help: "Time from proposing a command to its application, on the leader.", Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "forwarded_total", Help: "Requests forwarded to the leader."}),
		puts:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "puts_total", Help: "Objects committed with new bytes."}),
		dedups:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "dedups_total", Help: "Objects committed onto an existing blob."}),
	}
	m.badReplicas = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "bad_replica_reports_total", Help: "Replicas clients reported as failing a read."})
	m.underReplicated = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "rais", Subsystem: "master", Name: "repair_planned_volumes", Help: "Volumes the leader's last repair round found below target (members down within the grace count as present)."})
	m.repairs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "repairs_total", Help: "Volume repairs by outcome."}, []string{"outcome"})
	m.repairBytes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "repair_bytes_total", Help: "Bytes of volumes copied by repairs."})
	m.compactions = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "compactions_total", Help: "Volume copies compacted at the leader's request."})
	m.readBarriers = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "read_barriers_total", Help: "Linearizable reads on the leader, by how leadership was confirmed: a quorum round, or the read lease of an earlier one."}, []string{"kind"})
	m.watchInvalidations = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rais", Subsystem: "master", Name: "watch_invalidations_total", Help: "Record-cache invalidations a transaction waited for (one per watching client)."})
	m.reg.MustRegister(m.watchInvalidations, m.readBarriers, m.applySeconds, m.forwarded, m.puts, m.dedups, m.badReplicas, m.underReplicated, m.repairs, m.repairBytes, m.compactions)
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "rais", Subsystem: "master", Name: name, Help: help}, f))
	}
	gauge("is_leader", "1 on the Raft leader.", func() float64 {
		if s.raft.State() == raft.Leader {
			return 1
		}
		return 0
	})
	gauge("applied_index", "Last Raft index applied to the state.", func() float64 { return float64(s.fsm.AppliedIndex()) })
	gauge("objects", "Object keys.", func() float64 { return float64(s.fsm.Stats().Objects) })
	gauge("object_bytes", "Bytes named by object keys.", func() float64 { return float64(s.fsm.Stats().Bytes) })
	gauge("blobs", "Distinct blobs.", func() float64 { return float64(s.fsm.Stats().Blobs) })
	for st, name := range map[fsmpb.ServerState]string{
		fsmpb.ServerState_SERVER_ALIVE: "alive", fsmpb.ServerState_SERVER_DOWN: "down",
		fsmpb.ServerState_SERVER_DRAINING: "draining", fsmpb.ServerState_SERVER_RETIRED: "retired",
	} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "rais", Subsystem: "master", Name: "chunkservers", Help: "Chunk servers by state.",
			ConstLabels: prometheus.Labels{"state": name},
		}, func() float64 {
			servers, _ := s.fsm.Servers()
			n := 0
			for _, srv := range servers {
				if srv.State == st {
					n++
				}
			}
			return float64(n)
		}))
	}
	return m
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if addr, _ := s.raft.LeaderWithID(); addr == "" {
			http.Error(w, "no leader", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
