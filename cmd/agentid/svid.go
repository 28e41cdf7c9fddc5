package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func init() {
	register("svid", "inspect and verify SVIDs and their task claims", func(env *cli, args []string) error {
		return env.subcommands("svid", args, map[string]func(*cli, []string) error{
			"inspect": (*cli).svidInspect,
			"verify":  (*cli).svidVerify,
		})
	})
}

// svidReport is what inspect and verify print for one SVID.
type svidReport struct {
	Kind      string       `json:"kind"` // "x509" or "jwt"
	SPIFFEID  string       `json:"spiffe_id"`
	Serial    string       `json:"serial,omitempty"`
	Issuer    string       `json:"issuer,omitempty"`
	NotBefore *time.Time   `json:"not_before,omitempty"`
	NotAfter  time.Time    `json:"not_after"`
	Audience  []string     `json:"audience,omitempty"`
	Task      bool         `json:"task"`
	Claims    *svid.Claims `json:"claims,omitempty"`
	ClaimsErr string       `json:"claims_error,omitempty"`
	Reason    string       `json:"reason,omitempty"`
	Verified  *bool        `json:"verified,omitempty"`
}

type svidFlags struct {
	socket, oid, audience string
	trustDomains          []string
	asJSON                bool
	at                    string
}

func (env *cli) svidFlagSet(name, usage string, f *svidFlags) *flag.FlagSet {
	fs := env.flags(name, usage)
	fs.StringVar(&f.socket, "socket", "", "read the SVIDs from the Workload API at this socket (unix:///path or a path) instead of FILE")
	fs.StringVar(&f.oid, "extension-oid", svid.DefaultOID.String(), "OID of the claims extension")
	fs.StringVar(&f.audience, "audience", "", "with --socket: also fetch a JWT-SVID for this audience; with a JWT FILE: the audience to require")
	fs.Var((*stringList)(&f.trustDomains), "trust-domain", "allowed trust domain of the SVID and its chain (repeatable; default the SVID's own)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
	fs.StringVar(&f.at, "time", "", "check the deadline and validity at this RFC 3339 time instead of now")
	return fs
}

func (f *svidFlags) options() ([]svid.Option, time.Time, error) {
	oid, err := svid.ParseOID(f.oid)
	if err != nil {
		return nil, time.Time{}, err
	}
	now := time.Now()
	if f.at != "" {
		if now, err = time.Parse(time.RFC3339, f.at); err != nil {
			return nil, time.Time{}, fmt.Errorf("--time: %w", err)
		}
	}
	opts := []svid.Option{svid.WithOID(oid), svid.WithTime(now)}
	for _, s := range f.trustDomains {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("--trust-domain %q: %w", s, err)
		}
		opts = append(opts, svid.WithTrustDomains(td))
	}
	return opts, now, nil
}

func (env *cli) svidInspect(args []string) error {
	var f svidFlags
	fs := env.svidFlagSet("svid inspect", "svid inspect [flags] FILE | --socket SOCKET\n\nFILE holds an X.509-SVID (PEM certificates, a key is ignored) or a JWT-SVID.\nThe signature is not verified: use 'agentid svid verify' for that.", &f)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts, _, err := f.options()
	if err != nil {
		return err
	}
	var reports []svidReport
	switch {
	case f.socket != "" && fs.NArg() == 0:
		reports, err = fetchReports(f.socket, f.audience, opts)
	case f.socket == "" && fs.NArg() == 1:
		reports, err = fileReports(fs.Arg(0), f.audience, opts)
	default:
		return fmt.Errorf("%w: give one FILE or --socket", errUsage)
	}
	if err != nil {
		return err
	}
	return env.printReports(reports, f.asJSON)
}

func (env *cli) svidVerify(args []string) error {
	var f svidFlags
	var bundlePath string
	fs := env.svidFlagSet("svid verify", "svid verify --bundle FILE [flags] SVID-FILE\n\nVerifies the SVID's signature chain against the bundle (PEM certificates, or a\nSPIFFE bundle / JWKS JSON for JWT-SVIDs) and validates its task claims. Exits 1\nwith the reason when either fails.", &f)
	fs.StringVar(&bundlePath, "bundle", "", "trust bundle file (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if bundlePath == "" || fs.NArg() != 1 {
		return fmt.Errorf("%w: agentid svid verify --bundle FILE SVID-FILE", errUsage)
	}
	opts, now, err := f.options()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var r svidReport
	if tok, ok := jwtToken(data); ok {
		r, err = verifyJWT(tok, bundlePath, f.audience, opts)
	} else {
		r, err = verifyX509(data, bundlePath, now, opts)
	}
	if err != nil {
		return &exitError{code: 1, msg: "verification failed: " + err.Error()}
	}
	if err := env.printReports([]svidReport{r}, f.asJSON); err != nil {
		return err
	}
	if r.ClaimsErr != "" {
		return &exitError{code: 1, msg: "task claims rejected: " + r.ClaimsErr}
	}
	return nil
}

func verifyX509(data []byte, bundlePath string, now time.Time, opts []svid.Option) (svidReport, error) {
	certs, err := parseCerts(data)
	if err != nil {
		return svidReport{}, err
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return svidReport{}, err
	}
	bundle, err := loadX509Bundle(id.TrustDomain(), bundlePath)
	if err != nil {
		return svidReport{}, err
	}
	if _, _, err := x509svid.Verify(certs, bundle, x509svid.WithTime(now)); err != nil {
		return svidReport{}, err
	}
	r := x509Report(certs[0], opts)
	r.Verified = ptr(true)
	return r, nil
}

func verifyJWT(tok, bundlePath, audience string, opts []svid.Option) (svidReport, error) {
	if audience == "" {
		return svidReport{}, errors.New("--audience is required to verify a JWT-SVID")
	}
	insecure, err := jwtsvid.ParseInsecure(tok, []string{audience})
	if err != nil {
		return svidReport{}, err
	}
	bundle, err := loadJWTBundle(insecure.ID.TrustDomain(), bundlePath)
	if err != nil {
		return svidReport{}, err
	}
	s, err := jwtsvid.ParseAndValidate(tok, bundle, []string{audience})
	if err != nil {
		return svidReport{}, err
	}
	r := jwtReport(s, opts)
	r.Verified = ptr(true)
	return r, nil
}

func loadX509Bundle(td spiffeid.TrustDomain, path string) (x509bundle.Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		return spiffebundle.Parse(td, data)
	}
	return x509bundle.Parse(td, data)
}

func loadJWTBundle(td spiffeid.TrustDomain, path string) (jwtbundle.Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// A SPIFFE bundle (keys marked "use": "jwt-svid") or a plain JWKS.
	if b, err := spiffebundle.Parse(td, data); err == nil && len(b.JWTAuthorities()) > 0 {
		return b, nil
	}
	return jwtbundle.Parse(td, data)
}

func fileReports(path, audience string, opts []svid.Option) ([]svidReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if tok, ok := jwtToken(data); ok {
		aud := []string{audience}
		if audience == "" {
			aud = nil
		}
		s, err := jwtsvid.ParseInsecure(tok, aud)
		if err != nil {
			return nil, err
		}
		return []svidReport{jwtReport(s, opts)}, nil
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, err
	}
	return []svidReport{x509Report(certs[0], opts)}, nil
}

func fetchReports(socket, audience string, opts []svid.Option) ([]svidReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := socket
	if !strings.Contains(addr, "://") {
		addr = "unix://" + addr
	}
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	svids, err := client.FetchX509SVIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching X.509-SVIDs from %s: %w", socket, err)
	}
	var out []svidReport
	for _, s := range svids {
		out = append(out, x509Report(s.Certificates[0], opts))
	}
	if audience != "" {
		js, err := client.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: audience})
		if err != nil {
			return nil, fmt.Errorf("fetching JWT-SVIDs from %s: %w", socket, err)
		}
		for _, s := range js {
			out = append(out, jwtReport(s, opts))
		}
	}
	return out, nil
}

func x509Report(cert *x509.Certificate, opts []svid.Option) svidReport {
	r := svidReport{Kind: "x509", Serial: cert.SerialNumber.Text(16), Issuer: cert.Issuer.String(),
		NotBefore: ptr(cert.NotBefore.UTC()), NotAfter: cert.NotAfter.UTC()}
	if id, err := x509svid.IDFromCert(cert); err == nil {
		r.SPIFFEID = id.String()
	}
	c, found, err := svid.FromCertificate(cert, opts...)
	r.setClaims(c, found, err)
	return r
}

func jwtReport(s *jwtsvid.SVID, opts []svid.Option) svidReport {
	r := svidReport{Kind: "jwt", SPIFFEID: s.ID.String(), NotAfter: s.Expiry.UTC(), Audience: s.Audience}
	c, found, err := svid.FromJWTSVID(s, opts...)
	r.setClaims(c, found, err)
	return r
}

func (r *svidReport) setClaims(c svid.Claims, found bool, err error) {
	r.Task = found
	if err != nil {
		r.ClaimsErr = err.Error()
		var ve *svid.ValidationError
		if errors.As(err, &ve) {
			r.Reason = ve.Reason.String()
		}
		return
	}
	if found {
		r.Claims = &c
	}
}

func (env *cli) printReports(reports []svidReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if len(reports) == 1 {
			return enc.Encode(reports[0])
		}
		return enc.Encode(reports)
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(env.stdout)
		}
		printReport(env.stdout, r)
	}
	return nil
}

func printReport(w io.Writer, r svidReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("SPIFFE ID", r.SPIFFEID)
	row("Type", map[string]string{"x509": "X.509-SVID", "jwt": "JWT-SVID"}[r.Kind])
	if r.Serial != "" {
		row("Serial", r.Serial)
		row("Issuer", r.Issuer)
	}
	if r.NotBefore != nil {
		row("Not before", r.NotBefore.Format(time.RFC3339))
	}
	row("Not after", r.NotAfter.Format(time.RFC3339))
	if len(r.Audience) > 0 {
		row("Audience", strings.Join(r.Audience, ", "))
	}
	if r.Verified != nil {
		row("Signature", "verified against the bundle")
	}
	switch {
	case r.ClaimsErr != "":
		row("Task claims", "REJECTED: "+r.ClaimsErr)
	case r.Claims == nil:
		row("Task claims", "none (not an agent task)")
	default:
		c := r.Claims
		row("Agent", c.Agent)
		row("Task", c.Task)
		row("Model", c.Model)
		row("Prompt", c.Prompt)
		row("Scope", strings.Join(c.Scope, " "))
		row("Principal", c.Principal)
		row("Depth", strconv.Itoa(c.Depth()))
		for i, d := range c.Chain {
			row("Chain["+strconv.Itoa(i)+"]", d)
		}
		row("Deadline", c.Deadline.Format(time.RFC3339))
	}
	tw.Flush()
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found (and not a JWT)")
	}
	return certs, nil
}

func jwtToken(data []byte) (string, bool) {
	s := strings.TrimSpace(string(data))
	return s, strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

func ptr[T any](v T) *T { return &v }
