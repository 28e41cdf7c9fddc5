package daemon_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/daemon"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// TestProxyAllowUpgradesConfig: proxy { allow_upgrades } decides whether
// the daemon's proxy lets protocol upgrades through (default: refused,
// 400, before the upstream sees them).
func TestProxyAllowUpgradesConfig(t *testing.T) {
	src := "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\nproxy {\n listen = \":0\"\n upstream = \"http://127.0.0.1:8080\"\n%s}\n"
	for extra, want := range map[string]bool{"": false, " allow_upgrades = true\n": true, " allow_upgrades = false\n": false} {
		cfg, err := daemon.ParseConfig([]byte(strings.Replace(src, "%s", extra, 1)), "v.hcl")
		if err != nil || cfg.ProxyAllowUpgrades != want {
			t.Fatalf("%q: allow_upgrades %v, %v; want %v", extra, cfg.ProxyAllowUpgrades, err, want)
		}
	}
	if _, err := daemon.ParseConfig([]byte(strings.Replace(src, "%s", " allow_upgrades = \"yes\"\n", 1)), "v.hcl"); err == nil || !strings.Contains(err.Error(), "v.hcl:9:") {
		t.Fatalf("a string for allow_upgrades: %v, want an error at v.hcl:9", err)
	}

	hits := 0
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	}))
	t.Cleanup(upstream.Close)
	for _, allow := range []bool{false, true} {
		block := "proxy {\n  listen = \"127.0.0.1:0\"\n  upstream = \"" + upstream.URL + "\"\n"
		if allow {
			block += "  allow_upgrades = true\n"
		}
		f := startWith(t, block+"}\n", "")
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(
			f.taskSVID(t, f.ca, "kb:read"), f.ca.X509Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/verifier")))}}
		req, _ := http.NewRequest("GET", "https://"+f.d.Addr("proxy").String()+"/kb/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		before := hits
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if !allow {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get(verifier.HeaderDenyReason), "allow_upgrades") || hits != before {
				t.Errorf("default: %d %q, upstream hits %d; want 400 naming allow_upgrades, no upstream request", resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason), hits-before)
			}
			continue
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("allow_upgrades = true: %d %s", resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason))
		}
		rwc := resp.Body.(io.ReadWriteCloser)
		io.WriteString(rwc, "hello\n")
		got, err := bufio.NewReader(rwc).ReadString('\n')
		rwc.Close()
		if err != nil || got != "echo hello\n" {
			t.Errorf("upgraded through the daemon's proxy: %q %v", got, err)
		}
	}
}

// TestProxyCloseEndsStreams: shutting the daemon down closes the upgraded
// connections and the streamed responses its proxy holds open (an
// http.Server's Shutdown leaves hijacked connections alone and waits on
// streaming ones).
func TestProxyCloseEndsStreams(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			<-release
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() { close(release) }) // before upstream.Close, which waits for its handlers
	f := startWith(t, "proxy {\n  listen = \"127.0.0.1:0\"\n  upstream = \""+upstream.URL+"\"\n  allow_upgrades = true\n}\n", "")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(
		f.taskSVID(t, f.ca, "kb:read"), f.ca.X509Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/verifier")))}}
	base := "https://" + f.d.Addr("proxy").String()
	req, _ := http.NewRequest("GET", base+"/kb/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	up, err := client.Do(req)
	if err != nil || up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", up, err)
	}
	sse, err := client.Get(base + "/kb/events")
	if err != nil || sse.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", sse, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- f.d.Close() }()
	for name, body := range map[string]io.Reader{"upgraded connection": up.Body, "event stream": sse.Body} {
		got := make(chan error, 1)
		go func() { _, err := body.Read(make([]byte, 1)); got <- err }()
		select {
		case err := <-got:
			if err == nil {
				t.Errorf("%s: read data after the shutdown", name)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s: still open 20 s after the shutdown began", name)
		}
	}
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Error("Close did not return in 20 s")
	}
}
