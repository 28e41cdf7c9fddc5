package daemon

import (
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/verifier"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the verifier's Prometheus metrics, on their own registry.
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	reloads   *prometheus.CounterVec
	policyOK  prometheus.Gauge
}

func newMetrics(w *audit.Writer) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_decisions_total", Help: "Decisions by front-end, result and deciding rule.",
		}, []string{"frontend", "decision", "rule"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_refusals_total", Help: "Refused requests by front-end and reason code (no_credential, untrusted, forbidden, bad_request, too_large, audit_unavailable, ...).",
		}, []string{"frontend", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentid_decision_duration_seconds", Help: "Time to authenticate the peer, decide and record.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2},
		}, []string{"frontend"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_policy_reloads_total", Help: "Policy reloads by result (ok, error).",
		}, []string{"result"}),
		policyOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentid_policy_last_reload_ok", Help: "1 when the last policy reload succeeded, 0 when it failed and the previous policy is in force.",
		}),
	}
	m.reg.MustRegister(m.decisions, m.refusals, m.latency, m.reloads, m.policyOK,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if w != nil {
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "agentid_audit_pending_records", Help: "Decisions queued but not yet written to the audit log (audit lag).",
			}, func() float64 { return float64(w.Pending()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "agentid_audit_write_errors_total", Help: "Failed writes or syncs of the audit log (each retried).",
			}, func() float64 { return float64(w.WriteErrors()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "agentid_audit_healthy", Help: "1 while the audit log takes records, 0 while it cannot (decisions are then refused unless on_failure = \"allow\").",
			}, func() float64 {
				if w.Healthy() != nil {
					return 0
				}
				return 1
			}))
	}
	return m
}

// watchLiveness exposes the liveness view's age and size.
func (m *metrics) watchLiveness(v *verifier.LivenessView) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentid_liveness_view_age_seconds", Help: "Age of the view of live tasks (from the registrars' feed); task peers are refused once it exceeds max_staleness.",
		}, func() float64 {
			if v.AsOf().IsZero() {
				return -1
			}
			return time.Since(v.AsOf()).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentid_liveness_live_tasks", Help: "Live tasks in the view.",
		}, func() float64 { return float64(v.Len()) }))
}
