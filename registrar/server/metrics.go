package server

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics are the daemon's Prometheus metrics, on their own registry. A nil
// *metrics counts nothing (a Service built with New has none).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	created  prometheus.Counter
	revoked  prometheus.Counter
	refusals *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	policyOK prometheus.Gauge
}

// reasonNodeNotAllowed is the service's own refusal of a delegated task's
// node (sameNode); every other refusal reason is a registrar.Reason.
const reasonNodeNotAllowed = "node_not_allowed"

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_registrar_requests_total", Help: "Task API calls by RPC method and gRPC status code, on both listeners.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentid_registrar_request_duration_seconds", Help: "Time to answer a task API call, SPIRE round trips included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentid_registrar_tasks_created_total", Help: "Tasks created (root and delegated).",
		}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentid_registrar_tasks_revoked_total", Help: "Task entries removed by RevokeTask, descendants included.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_registrar_refusals_total", Help: "Task creations and delegations refused, by reason.",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentid_registrar_policy_reloads_total", Help: "Issuance policy reloads by result (ok, error).",
		}, []string{"result"}),
		policyOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentid_registrar_policy_last_reload_ok", Help: "1 when the last issuance policy (re)load succeeded, 0 when it failed and the previous policy is in force.",
		}),
	}
	// Every reason starts at 0, so that rate() sees its first refusal.
	for name := range reasonByName {
		m.refusals.WithLabelValues(name)
	}
	m.refusals.WithLabelValues(reasonNodeNotAllowed)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.policyOK.Set(1) // NewDaemon fails unless the policy loads
	m.reg.MustRegister(m.requests, m.latency, m.created, m.revoked, m.refusals, m.reloads, m.policyOK,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// unary counts every call and its latency by method ("CreateTask") and
// status code. Put it outermost, so that it sees the calls other
// interceptors refuse.
func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	method := path.Base(info.FullMethod)
	m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	return resp, err
}

func (m *metrics) taskCreated() {
	if m != nil {
		m.created.Inc()
	}
}

func (m *metrics) tasksRevoked(n int) {
	if m != nil {
		m.revoked.Add(float64(n))
	}
}

// refused counts a refused creation or delegation by reason: a
// registrar.Reason's name or reasonNodeNotAllowed.
func (m *metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		m.policyOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.policyOK.Set(1)
}
