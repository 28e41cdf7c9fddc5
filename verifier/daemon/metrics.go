package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the verifier's Prometheus metrics, on their own registry.
type metrics struct {
	reg          *prometheus.Registry
	decisions    *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	reloads      *prometheus.CounterVec
	policyOK     prometheus.Gauge
	auditPending prometheus.GaugeFunc
}

func newMetrics(pending func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_decisions_total", Help: "Decisions by front-end, result and deciding rule.",
		}, []string{"frontend", "decision", "rule"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentid_decision_duration_seconds", Help: "Time to authenticate the peer and decide.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2},
		}, []string{"frontend"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_policy_reloads_total", Help: "Policy reloads by result (ok, error).",
		}, []string{"result"}),
		policyOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentid_policy_last_reload_ok", Help: "1 when the last policy reload succeeded, 0 when it failed and the previous policy is in force.",
		}),
		auditPending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentid_audit_pending_records", Help: "Decisions queued but not yet written to the audit log (audit lag).",
		}, pending),
	}
	m.reg.MustRegister(m.decisions, m.latency, m.reloads, m.policyOK, m.auditPending,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}
