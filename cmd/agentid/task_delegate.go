package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/registrar/server"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// delegateFlags are the flags of `agentid task create --delegate`: the
// calling task asks the agentid-registrar daemon for a child of itself,
// authenticated by its own X.509-SVID over SPIFFE mTLS.
type delegateFlags struct {
	delegate                    bool
	socket, registrar, serverID string
	timeout                     time.Duration
}

func (d *delegateFlags) flags(fs *flag.FlagSet) {
	fs.BoolVar(&d.delegate, "delegate", false, "delegate: create a child of the calling task through the agentid-registrar daemon,\nauthenticated by the caller's own X.509-SVID (needs --registrar; no --policy, --principal or --parent-task)")
	fs.StringVar(&d.socket, "socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "with --delegate: Workload API socket giving the caller's SVID (env SPIFFE_ENDPOINT_SOCKET)")
	fs.StringVar(&d.registrar, "registrar", "", "with --delegate: the daemon's mTLS address, host:port")
	fs.StringVar(&d.serverID, "registrar-id", "", "with --delegate: the daemon's SPIFFE ID (default: any ID of the caller's trust domain)")
	fs.DurationVar(&d.timeout, "timeout", 30*time.Second, "with --delegate: time allowed to get the SVID and the answer")
}

// delegateSources returns the caller's X.509-SVID and the bundles from the
// Workload API at socket ("" = the environment's SPIFFE_ENDPOINT_SOCKET).
// Tests replace it with a static test-CA SVID; the real Workload API is
// exercised by the end-to-end tests with SPIRE.
var delegateSources = func(ctx context.Context, socket string) (x509svid.Source, x509bundle.Source, func(), error) {
	var opts []workloadapi.X509SourceOption
	if socket != "" {
		if filepath.IsAbs(socket) {
			socket = "unix://" + socket
		}
		opts = append(opts, workloadapi.WithClientOptions(workloadapi.WithAddr(socket)))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("workload API: %w", err)
	}
	return src, src, func() { src.Close() }, nil
}

func (env *cli) taskDelegate(f *createFlags, fs *flag.FlagSet) error {
	in, err := f.delegateRequest(fs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.remote.timeout)
	defer cancel()
	svids, bundles, done, err := delegateSources(ctx, f.remote.socket)
	if err != nil {
		return err
	}
	defer done()
	authorize, err := f.remote.authorizer(svids)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(f.remote.registrar,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.MTLSClientConfig(svids, bundles, authorize))))
	if err != nil {
		return fmt.Errorf("--registrar %q: %w", f.remote.registrar, err)
	}
	defer conn.Close()
	t, err := registrarv1.NewRegistrarClient(conn).DelegateTask(ctx, in)
	if err != nil {
		return f.remote.callError(err)
	}
	return env.printDelegated(f, t)
}

// delegateRequest checks the flags and builds the request.
func (f *createFlags) delegateRequest(fs *flag.FlagSet) (*registrarv1.DelegateTaskRequest, error) {
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case f.remote.registrar == "":
		return nil, fmt.Errorf("%w: --delegate needs --registrar host:port", errUsage)
	case f.policy != "":
		return nil, fmt.Errorf("%w: --delegate takes no --policy (the daemon holds the issuance policy)", errUsage)
	case f.principal != "":
		return nil, fmt.Errorf("%w: --delegate takes no --principal (the child inherits the caller's)", errUsage)
	case f.parentTask != "":
		return nil, fmt.Errorf("%w: --delegate takes no --parent-task (the parent is the caller, by its SVID)", errUsage)
	case f.agent == "" || f.model == "":
		return nil, fmt.Errorf("%w: --agent and --model are required", errUsage)
	case (f.prompt == "") == (len(f.promptFiles) == 0):
		return nil, fmt.Errorf("%w: give one of --prompt-sha256 and --prompt-file", errUsage)
	case f.deadline != "" && f.ttl != 0:
		return nil, fmt.Errorf("%w: give --deadline or --ttl, not both", errUsage)
	case f.ttl < 0 || f.ttl%time.Second != 0:
		return nil, fmt.Errorf("%w: --ttl %s is not a positive number of whole seconds", errUsage, f.ttl)
	}
	prompt, err := f.promptDigest()
	if err != nil {
		return nil, err
	}
	if f.deadline != "" {
		if _, err := time.Parse(time.RFC3339, f.deadline); err != nil {
			return nil, fmt.Errorf("--deadline: %w", err)
		}
	}
	exe, err := f.exeDigest()
	if err != nil {
		return nil, err
	}
	selectors := f.selectors
	if exe != "" { // the API's way to pin: a selector of the task type
		selectors = append(slices.Clone(selectors), svid.DefaultSelectorType+":"+svid.ExeSelector(exe))
	}
	return &registrarv1.DelegateTaskRequest{Agent: f.agent, Task: f.task, Model: f.model, Prompt: prompt,
		Scope: f.scopes, Deadline: f.deadline, TtlSeconds: int64(f.ttl / time.Second),
		Selectors: selectors, ParentId: f.parentID}, nil
}

// authorizer authorizes the daemon: --registrar-id, else any member of the
// caller's own trust domain that is not a task (an agent could answer with
// a forged task record for the caller to launch).
func (d *delegateFlags) authorizer(svids x509svid.Source) (tlsconfig.Authorizer, error) {
	if d.serverID != "" {
		id, err := spiffeid.FromString(d.serverID)
		if err != nil {
			return nil, fmt.Errorf("--registrar-id %q: %w", d.serverID, err)
		}
		return tlsconfig.AuthorizeID(id), nil
	}
	own, err := svids.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("own SVID: %w", err)
	}
	member := tlsconfig.AuthorizeMemberOf(own.ID.TrustDomain())
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if svid.IsTaskID(id) {
			return fmt.Errorf("%s is a task, not the registrar (name the registrar with --registrar-id)", id)
		}
		return member(id, chains)
	}, nil
}

// callError prints a refusal as the local create does ("registrar:
// scope_escalation: …"); other failures name the daemon and the code.
func (d *delegateFlags) callError(err error) error {
	st, ok := status.FromError(err)
	switch {
	case !ok:
		return err
	case server.ReasonOf(err) != 0:
		return errors.New("registrar: " + st.Message())
	}
	return fmt.Errorf("registrar %s: %s: %s", d.registrar, st.Code(), st.Message())
}

// delegatedJSON is the --json view of a delegated task: the local create's
// fields but the SVID TTLs, which the task API does not return.
type delegatedJSON struct {
	SPIFFEID    string       `json:"spiffe_id"`
	EntryID     string       `json:"entry_id"`
	ParentID    string       `json:"parent_id"`
	ExpiresAt   int64        `json:"expires_at,omitempty"`
	Selectors   []string     `json:"selectors,omitempty"`
	Incarnation string       `json:"incarnation,omitempty"`
	Claims      *svid.Claims `json:"claims,omitempty"`
}

func (env *cli) printDelegated(f *createFlags, t *registrarv1.Task) error {
	c, err := svid.Parse([]byte(t.GetClaimsJson()))
	if err != nil {
		return fmt.Errorf("registrar answered task %s with claims that do not parse: %w", t.GetSpiffeId(), err)
	}
	if f.output != "" {
		if err := writeTaskRecord(f.output, t.GetIncarnation(), c); err != nil {
			return err
		}
	}
	if f.asJSON {
		return printJSON(env.stdout, delegatedJSON{SPIFFEID: t.GetSpiffeId(), EntryID: t.GetEntryId(), ParentID: t.GetParentId(),
			ExpiresAt: t.GetExpiresAt(), Selectors: t.GetSelectors(), Incarnation: t.GetIncarnation(), Claims: &c})
	}
	id, err := spiffeid.FromString(t.GetSpiffeId())
	if err != nil {
		return fmt.Errorf("registrar answered with task ID %q: %w", t.GetSpiffeId(), err)
	}
	printTask(env.stdout, registrar.Task{ID: id, EntryID: t.GetEntryId(), ParentID: t.GetParentId(), Claims: c, Selectors: t.GetSelectors(), Incarnation: t.GetIncarnation()})
	return nil
}
