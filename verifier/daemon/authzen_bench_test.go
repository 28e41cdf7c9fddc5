package daemon_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const benchAuthZENPolicy = `
rule "agents-read-kb" {
  effect = "allow"
  subject {
    type = "agent_task"
  }
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    authzen {
      names = ["read"]
    }
  }
  resource {
    type = "kb"
  }
}

rule "users-read-kb" {
  effect = "allow"
  subject {
    type = "user"
  }
  action {
    authzen {
      names = ["read"]
    }
  }
  resource {
    type = "kb"
  }
}
`

type benchKind struct {
	name, path string
	body       []byte
}

// load sends n requests of one kind from conc keep-alive clients and
// returns the elapsed time and every request's latency.
func load(b *testing.B, clients []*http.Client, base string, k benchKind, n int) (time.Duration, []time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	per := n / len(clients)
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, per)
			for range per {
				t0 := time.Now()
				resp, err := c.Post(base+k.path, "application/json", bytes.NewReader(k.body))
				if err != nil {
					b.Error(err)
					return
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Contains(out, []byte("true")) {
					b.Errorf("%s: %d %s", k.name, resp.StatusCode, out)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return time.Since(start), lat
}

func pct(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkAuthZENvsCheckAPI compares, over loopback HTTP to a running
// daemon (1,000-decision rounds from 8 keep-alive clients, audit with the
// default durability, the kinds interleaved and their order flipped every
// round): the check API with an X.509-SVID, AuthZEN evaluation with the
// same SVID as an agent_task subject, and AuthZEN evaluation with an
// asserted user subject. It reports requests/s, p50 and p99 of each and
// the AuthZEN / check API throughput ratio (median of rounds); then one
// 100-item batch against 100 single evaluations, sequentially.
// Run with -benchtime 1x.
func BenchmarkAuthZENvsCheckAPI(b *testing.B) {
	f := startWith(b, "check_api {\n  listen = \"127.0.0.1:0\"\n}\nauthzen {\n  subject_types = [\"user\"]\n}\n", "", benchAuthZENPolicy)
	base := "http://" + f.d.Addr("check_api").String()
	cert := jsonString(f.taskCert(b, "kb:read"))
	kinds := []benchKind{
		{"check_api", "/v1/check", []byte(`{"certificate":` + cert + `,"action":{"kind":"http","method":"GET","path":"/kb/doc"}}`)},
		{"authzen_agent", "/access/v1/evaluation", []byte(`{"subject":{"type":"agent_task","id":"spiffe://example.org/agent/researcher/task/T-42","properties":{"certificate":` + cert + `}},"action":{"name":"read"},"resource":{"type":"kb","id":"doc"}}`)},
		{"authzen_user", "/access/v1/evaluation", []byte(`{"subject":{"type":"user","id":"alice"},"action":{"name":"read"},"resource":{"type":"kb","id":"doc"}}`)},
	}
	clients := make([]*http.Client, 8)
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	}
	const rounds, n = 7, 1000
	lat := map[string][]time.Duration{}
	rate := map[string][]float64{}
	for _, k := range kinds { // warm up: connections, the peer cache
		load(b, clients, base, k, 200)
	}
	b.ResetTimer()
	for r := range rounds {
		order := slices.Clone(kinds)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, k := range order {
			el, l := load(b, clients, base, k, n)
			lat[k.name] = append(lat[k.name], l...)
			rate[k.name] = append(rate[k.name], float64(n)/el.Seconds())
		}
	}
	b.StopTimer()
	med := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	for _, k := range kinds {
		b.ReportMetric(med(rate[k.name]), k.name+"-req/s")
		b.ReportMetric(float64(pct(lat[k.name], 0.50).Microseconds()), k.name+"-p50-µs")
		b.ReportMetric(float64(pct(lat[k.name], 0.99).Microseconds()), k.name+"-p99-µs")
	}
	var ratios, uratios []float64
	for i := range rate["check_api"] {
		ratios = append(ratios, rate["authzen_agent"][i]/rate["check_api"][i])
		uratios = append(uratios, rate["authzen_user"][i]/rate["check_api"][i])
	}
	b.ReportMetric(med(ratios), "agent/check-ratio")
	b.ReportMetric(med(uratios), "user/check-ratio")

	// A 100-item batch against 100 single calls, one client, interleaved.
	var items []string
	for i := range 100 {
		items = append(items, fmt.Sprintf(`{"resource":{"type":"kb","id":"doc-%d"}}`, i))
	}
	batch := benchKind{"batch", "/access/v1/evaluations", []byte(`{"subject":{"type":"user","id":"alice"},"action":{"name":"read"},"evaluations":[` + strings.Join(items, ",") + `]}`)}
	one := clients[:1]
	var tb, ts []float64
	for r := range rounds {
		runBatch := func() { el, _ := load(b, one, base, batch, 1); tb = append(tb, el.Seconds()) }
		runSingles := func() { el, _ := load(b, one, base, kinds[2], 100); ts = append(ts, el.Seconds()) }
		if r%2 == 0 {
			runBatch()
			runSingles()
		} else {
			runSingles()
			runBatch()
		}
	}
	b.ReportMetric(med(tb)*1e3, "batch100-ms")
	b.ReportMetric(med(ts)*1e3, "singles100-ms")
	b.ReportMetric(med(ts)/med(tb), "singles/batch")
}
