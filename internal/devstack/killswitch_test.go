package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// killBound is the kill switch's promise: every verifier refuses a revoked
// subtree's credentials within this long (the dev stack's feed interval is
// 500 ms).
const killBound = 2 * time.Second

// TestKillSwitch: on the real SPIRE, two registrars and three verifiers
// (one watching the first registrar, one the second, one both). A root task
// delegates through the first registrar, its child through the second; the
// three tasks call every verifier's check API with the JWT-SVID and the
// X.509-SVID they fetched. Revoking the root through the second registrar
// gets all six credentials refused with the reason "revoked" by all three
// verifiers within 2 s. Then the same for a root whose entry is deleted
// with `spire-server entry delete`, behind every registrar's back.
func TestKillSwitch(t *testing.T) {
	spireBin := spiretest.Bin(t)
	binDir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	r2, err := st.StartRegistrar(ctx, "reg2")
	if err != nil {
		t.Fatal(err)
	}
	verifiers := []*devstack.Verifier{st.Verifier}
	for name, feeds := range map[string][]string{"v2": {r2.Addr}, "v3": {r2.Addr, st.RegistrarAddr}} {
		v, err := st.StartVerifier(ctx, devstack.VerifierOptions{Name: name, PolicyDir: st.Verifier.PolicyDir, Registrars: feeds})
		if err != nil {
			t.Fatal(err)
		}
		verifiers = append(verifiers, v)
	}

	work := t.TempDir()
	// tree creates root → child (delegated through the first registrar) →
	// grandchild (through the second) and returns the root's SPIFFE ID and
	// every task's credentials.
	tree := func(prefix string) (string, []credential) {
		t.Helper()
		root := prefix + "-root.json"
		if _, err := agentid(t, st, work, "task", "create", "--server-socket", st.ServerSocket, "--policy", st.IssuancePolicy,
			"--parent-id", st.NodeID, "--agent", "planner", "--task", prefix+"-P", "--model", "openai/gpt-4o",
			"--prompt-file", st.SamplePrompt, "--principal", "spiffe://example.org/user/alice", "--scope", "kb:read",
			"--ttl", "1h", "--output", root); err != nil {
			t.Fatal(err)
		}
		files := []string{root}
		for i, step := range []struct{ agent, registrar, ttl string }{{"researcher", st.RegistrarAddr, "30m"}, {"summarizer", r2.Addr, "20m"}} {
			out := fmt.Sprintf("%s-%d.json", prefix, i+1)
			asTask(t, st, work, files[len(files)-1], "agentid", "task", "create", "--delegate", "--socket", st.AgentSocket,
				"--registrar", step.registrar, "--registrar-id", st.RegistrarID, "--agent", step.agent,
				"--task", fmt.Sprintf("%s-%d", prefix, i+1), "--model", "openai/gpt-4o", "--prompt-file", st.SamplePrompt,
				"--scope", "kb:read", "--ttl", step.ttl, "--output", out)
			files = append(files, out)
		}
		var creds []credential
		for _, f := range files {
			creds = append(creds, fetchCredentials(t, st, work, f)...)
		}
		return "spiffe://example.org/agent/planner/task/" + prefix + "-P", creds
	}

	// Through the second registrar's operator socket.
	rootA, credsA := tree("KA")
	killAndMeasure(t, verifiers, credsA, func() {
		conn, err := grpc.NewClient("unix://"+r2.OperatorSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		resp, err := registrarv1.NewRegistrarClient(conn).RevokeTask(ctx, &registrarv1.RevokeTaskRequest{SpiffeId: rootA})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetRemoved()); n != 3 {
			t.Fatalf("revoke removed %d entries (%v), want the root and its two descendants", n, resp.GetRemoved())
		}
	})

	// Behind the registrars' back: only the root's entry, with the SPIRE CLI.
	rootB, credsB := tree("KB")
	killAndMeasure(t, verifiers, credsB, func() {
		show, err := exec.Command(filepath.Join(st.SpireBin, "spire-server"), "entry", "show", "-socketPath", st.ServerSocket,
			"-spiffeID", rootB, "-output", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("entry show: %v\n%s", err, show)
		}
		var entries struct {
			Entries []struct {
				ID string `json:"id"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(show, &entries); err != nil || len(entries.Entries) != 1 {
			t.Fatalf("entry show %s: %v\n%s", rootB, err, show)
		}
		if out, err := exec.Command(filepath.Join(st.SpireBin, "spire-server"), "entry", "delete", "-socketPath", st.ServerSocket,
			"-entryID", entries.Entries[0].ID).CombinedOutput(); err != nil {
			t.Fatalf("entry delete: %v\n%s", err, out)
		}
	})
}

// credential is one task credential as the check API takes it.
type credential struct {
	name string // task file and kind, for messages
	body string // the check API's request body, without the action
}

// fetchCredentials fetches the task's JWT-SVID and X.509-SVID as the task.
func fetchCredentials(t testing.TB, st *devstack.Stack, work, taskFile string) []credential {
	t.Helper()
	agent := filepath.Join(st.SpireBin, "spire-agent")
	out := asTask(t, st, work, taskFile, agent, "api", "fetch", "jwt", "-audience", devstack.DefaultJWTAudience, "-socketPath", st.AgentSocket)
	lines := strings.Split(out, "\n")
	if len(lines) < 2 {
		t.Fatalf("fetch jwt: %q", out)
	}
	dir, err := os.MkdirTemp(work, "svid")
	if err != nil {
		t.Fatal(err)
	}
	asTask(t, st, work, taskFile, agent, "api", "fetch", "x509", "-socketPath", st.AgentSocket, "-write", dir)
	pem, err := os.ReadFile(filepath.Join(dir, "svid.0.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jwtBody, _ := json.Marshal(map[string]string{"jwt": strings.TrimSpace(lines[1])})
	certBody, _ := json.Marshal(map[string]string{"certificate": string(pem)})
	return []credential{{taskFile + " JWT-SVID", string(jwtBody)}, {taskFile + " X.509-SVID", string(certBody)}}
}

// newHTTPClient keeps connections to the check APIs open for the many
// callers of a test.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{}).DialContext}, Timeout: 5 * time.Second}
}

// decide asks a verifier's check API about a read with cred: allow, or the
// deny code.
func decide(client *http.Client, v *devstack.Verifier, cred credential) (string, error) {
	body := strings.TrimSuffix(cred.body, "}") + `,"action":{"kind":"http","method":"GET","path":"/kb/docs/1"}}`
	resp, err := client.Post(v.CheckURL, "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var dec struct {
		Allow    bool   `json:"allow"`
		DenyCode string `json:"deny_code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&dec); err != nil {
		return "", err
	}
	if dec.Allow {
		return "allow", nil
	}
	return dec.DenyCode, nil
}

// killAndMeasure has every credential call every verifier until each is
// allowed everywhere, kills, and then waits until every pair is refused
// with "revoked", failing past killBound; it logs the latencies.
func killAndMeasure(t *testing.T, verifiers []*devstack.Verifier, creds []credential, kill func()) {
	t.Helper()
	client := newHTTPClient()
	// Calling before the kill: everything is allowed (the feed has seen
	// the new tasks: a credential is allowed as soon as it is issued).
	for _, v := range verifiers {
		for _, c := range creds {
			got, err := decide(client, v, c)
			if err != nil || got != "allow" {
				t.Fatalf("%s at %s before the kill: %q %v", c.name, v.Name, got, err)
			}
		}
	}
	type pair struct{ v, c int }
	var mu sync.Mutex
	refusedAt := map[pair]time.Duration{}
	var wrong []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var killed time.Time
	var killedMu sync.RWMutex
	for vi, v := range verifiers {
		for ci, c := range creds {
			wg.Add(1)
			go func() { // this task keeps calling this verifier
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					killedMu.RLock()
					k := killed
					killedMu.RUnlock()
					got, err := decide(client, v, c)
					mu.Lock()
					switch {
					case err != nil:
						wrong = append(wrong, fmt.Sprintf("%s at %s: %v", c.name, v.Name, err))
					case got == "revoked" && !k.IsZero():
						if _, ok := refusedAt[pair{vi, ci}]; !ok {
							refusedAt[pair{vi, ci}] = time.Since(k)
						}
					case got != "allow":
						wrong = append(wrong, fmt.Sprintf("%s at %s: %q", c.name, v.Name, got))
					}
					n := len(refusedAt)
					mu.Unlock()
					if n == len(verifiers)*len(creds) {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}
	time.Sleep(300 * time.Millisecond) // calls in flight before the kill
	killedMu.Lock()
	killed = time.Now()
	killedMu.Unlock()
	kill()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(killBound + time.Second):
	}
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(wrong) > 0 {
		t.Errorf("unexpected answers: %s", strings.Join(wrong[:min(len(wrong), 5)], "; "))
	}
	var lat []time.Duration
	for vi, v := range verifiers {
		for ci, c := range creds {
			d, ok := refusedAt[pair{vi, ci}]
			switch {
			case !ok:
				t.Errorf("%s still not refused as revoked at %s %v after the kill", c.name, v.Name, killBound+time.Second)
			case d > killBound:
				t.Errorf("%s refused at %s after %v, past the %v bound", c.name, v.Name, d.Round(time.Millisecond), killBound)
			}
			if ok {
				lat = append(lat, d)
			}
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		t.Logf("kill to revoked at %d verifier×credential pairs: min %v, median %v, max %v", len(lat),
			lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
}
