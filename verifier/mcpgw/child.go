package mcpgw

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Restart backoff of a stdio child: doubling from backoffMin up to
// backoffMax, back to backoffMin after a child that ran stableAfter.
const (
	backoffMin  = 100 * time.Millisecond
	backoffMax  = 30 * time.Second
	stableAfter = 10 * time.Second
	// maxChildLine bounds one message from the child.
	maxChildLine = maxUpstreamMessage
	// stopGrace is how long a child has between SIGTERM and SIGKILL.
	stopGrace = 5 * time.Second
)

var errChildExited = errors.New("the stdio MCP server exited")

// child runs a stdio MCP server and is the gateway's http.RoundTripper to
// it: it speaks Streamable HTTP (JSON answers, sessions) on one side and
// newline-delimited JSON-RPC on the child's stdin and stdout on the
// other. All sessions share the one child: the first initialize is
// forwarded and its result answers the later ones; request ids are
// renumbered so that sessions cannot collide. When the child exits, the
// calls in flight fail with a JSON-RPC error, and it is restarted with
// backoff and initialized again with the first client's parameters.
//
// Requests from the child to the client (sampling, roots/list,
// elicitation) are answered "method not found", and its notifications
// are dropped: the gateway has no per-session stream to send them on.
type child struct {
	argv []string
	env  []string
	dir  string
	log  *slog.Logger
	errs *stderrLog

	mu         sync.Mutex
	proc       *proc         // the running child (being initialized until cur is set), nil while down
	cur        *proc         // the child serving requests, nil while down
	up         chan struct{} // closed when cur is set; replaced when it exits
	lastErr    error         // why the last child exited
	crashLoop  bool          // restarts are backing off over a second: requests fail at once
	sessions   map[string]bool
	initParams json.RawMessage // of the first initialize
	initResult json.RawMessage
	initMu     sync.Mutex // serialises the first initialize
	closed     bool
	done       chan struct{}
	stopped    chan struct{} // closed when the supervisor returned
	ids        atomic.Int64
	starts     atomic.Int64
}

type proc struct {
	cmd   *exec.Cmd
	wmu   sync.Mutex
	stdin io.WriteCloser

	mu          sync.Mutex
	pending     map[int64]chan []byte
	initialized bool // notifications/initialized was sent
	dead        chan struct{}
	down        chan struct{} // closed once the supervisor has taken the dead child out (setDown)
	exitErr     error
}

func startChild(cfg Config, log *slog.Logger) *child {
	n := cfg.StderrBytes
	if n <= 0 {
		n = DefaultStderrBytes
	}
	c := &child{argv: cfg.Command, env: cfg.Env, dir: cfg.Dir, log: log, errs: newStderrLog(n, log),
		up: make(chan struct{}), sessions: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	if c.env == nil {
		c.env = []string{}
	}
	go c.supervise()
	return c
}

// Close stops the child and its restarts.
func (c *child) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	p := c.proc
	c.mu.Unlock()
	if p != nil {
		p.stop()
	}
	<-c.stopped
	return nil
}

func (c *child) supervise() {
	defer close(c.stopped)
	backoff := backoffMin
	for {
		start := time.Now()
		p, err := c.start()
		if err == nil {
			if !c.track(p) { // closed while starting
				p.stop()
				<-p.dead
				return
			}
			if err = c.replayInit(p); err == nil {
				c.setUp(p)
			} else {
				p.stop()
			}
			<-p.dead
			if err == nil {
				err = p.exitErr
			}
			c.setDown(p, err)
		}
		select {
		case <-c.done:
			return
		default:
		}
		if time.Since(start) > stableAfter {
			backoff = backoffMin
		}
		c.mu.Lock()
		c.lastErr, c.crashLoop = err, backoff > time.Second
		c.mu.Unlock()
		c.log.Warn("mcp gateway: the stdio MCP server exited; restarting", "command", c.argv[0], "err", err, "after", backoff)
		select {
		case <-time.After(backoff):
		case <-c.done:
			return
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// track makes p the child that Close stops; false when closed already.
func (c *child) track(p *proc) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.proc = p
	return true
}

func (c *child) start() (*proc, error) {
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env, cmd.Dir, cmd.Stderr = c.env, c.dir, c.errs
	setProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.starts.Add(1)
	c.errs.reset()
	p := &proc{cmd: cmd, stdin: stdin, pending: map[int64]chan []byte{}, dead: make(chan struct{}), down: make(chan struct{})}
	go c.read(p, stdout)
	return p, nil
}

// read takes the child's messages until its stdout closes, then reaps it.
func (c *child) read(p *proc, stdout io.Reader) {
	r := bufio.NewReaderSize(stdout, 64<<10)
	var err error
	for {
		var line []byte
		if line, err = readLine(r); err != nil {
			break
		}
		if len(bytes.TrimSpace(line)) > 0 {
			c.receive(p, line)
		}
	}
	p.stop()
	werr := p.cmd.Wait()
	if werr == nil && !errors.Is(err, io.EOF) {
		werr = err
	}
	p.mu.Lock()
	p.exitErr = fmt.Errorf("%w: %v", errChildExited, cmp(werr))
	p.pending = nil
	p.mu.Unlock()
	close(p.dead)
}

func cmp(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := r.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > maxChildLine {
			return nil, errors.New("a message from the stdio MCP server exceeds the gateway's limit")
		}
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// receive routes one message from the child.
func (c *child) receive(p *proc, line []byte) {
	var env map[string]json.RawMessage
	if json.Unmarshal(line, &env) != nil {
		c.log.Warn("mcp gateway: the stdio MCP server wrote a line that is not JSON-RPC", "line", truncateBytes(line))
		return
	}
	method, hasMethod := env["method"]
	id, hasID := env["id"]
	switch {
	case hasMethod && hasID: // a request to the client: none can be answered
		var m string
		json.Unmarshal(method, &m)
		if m == "ping" {
			p.write(map[string]any{"jsonrpc": "2.0", "id": id, "result": map[string]any{}})
			return
		}
		p.write(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": -32601,
			"message": m + " is not available through the agentid gateway"}})
	case hasMethod: // a notification: no stream to send it on
		c.log.Debug("mcp gateway: notification from the stdio MCP server dropped", "method", string(method))
	default:
		n, err := strconv.ParseInt(string(id), 10, 64)
		if err != nil {
			return
		}
		p.mu.Lock()
		ch := p.pending[n]
		delete(p.pending, n)
		p.mu.Unlock()
		if ch != nil {
			ch <- line
		}
	}
}

func truncateBytes(b []byte) string {
	if len(b) > 256 {
		return string(b[:256]) + "…"
	}
	return string(b)
}

func (p *proc) write(msg any) error {
	b, err := json.Marshal(msg) // one line: Marshal escapes newlines, compacts raw messages
	if err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err = p.stdin.Write(append(b, '\n'))
	return err
}

// call sends a request to the child and waits for its answer (the whole
// message, with the child's id).
func (c *child) call(ctx context.Context, p *proc, method string, params json.RawMessage) ([]byte, error) {
	id := c.ids.Add(1)
	ch := make(chan []byte, 1)
	p.mu.Lock()
	if p.pending == nil {
		p.mu.Unlock()
		<-p.dead
		return nil, p.exitErr
	}
	p.pending[id] = ch
	p.mu.Unlock()
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if len(params) > 0 {
		msg["params"] = params
	}
	if err := p.write(msg); err != nil {
		<-p.dead // a broken stdin: the child is on its way out
		return nil, p.exitErr
	}
	select {
	case ans := <-ch:
		return ans, nil
	case <-p.dead:
		return nil, p.exitErr
	case <-ctx.Done():
		p.mu.Lock()
		if p.pending != nil {
			delete(p.pending, id)
		}
		p.mu.Unlock()
		p.write(map[string]any{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": map[string]any{"requestId": id, "reason": "the client went away"}})
		return nil, ctx.Err()
	}
}

// replayInit initializes a restarted child as the first client did.
func (c *child) replayInit(p *proc) error {
	c.mu.Lock()
	params := c.initParams
	c.mu.Unlock()
	if params == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ans, err := c.call(ctx, p, "initialize", params)
	if err != nil {
		return err
	}
	var env struct {
		Error *struct{ Message string } `json:"error"`
	}
	if json.Unmarshal(ans, &env) == nil && env.Error != nil {
		return fmt.Errorf("initialize after restart: %s", env.Error.Message)
	}
	p.notifyInitialized()
	return nil
}

func (p *proc) notifyInitialized() {
	p.mu.Lock()
	sent := p.initialized
	p.initialized = true
	p.mu.Unlock()
	if !sent {
		p.write(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	}
}

func (c *child) setUp(p *proc) {
	c.mu.Lock()
	c.cur, c.crashLoop = p, false
	close(c.up)
	c.mu.Unlock()
}

func (c *child) setDown(p *proc, err error) {
	c.mu.Lock()
	if c.cur == p {
		c.cur = nil
		c.up = make(chan struct{})
	}
	if c.proc == p {
		c.proc = nil
	}
	c.lastErr = err
	c.mu.Unlock()
	close(p.down)
}

// running waits until a child is up; in a crash loop (restarts backing
// off over a second) it fails at once with the last exit.
func (c *child) running(ctx context.Context) (*proc, error) {
	for {
		c.mu.Lock()
		p, up, closed, loop, last := c.cur, c.up, c.closed, c.crashLoop, c.lastErr
		c.mu.Unlock()
		switch {
		case closed:
			return nil, errors.New("the gateway is closed")
		case p != nil:
			select {
			case <-p.dead:
				// exited, and not yet taken out: a request sent to it
				// would fail although a new child is on its way
				select {
				case <-p.down:
				case <-ctx.Done():
					return nil, fmt.Errorf("the stdio MCP server is not running: %w", ctx.Err())
				case <-c.done:
				}
				continue
			default:
				return p, nil
			}
		case loop:
			return nil, fmt.Errorf("the stdio MCP server keeps exiting and is restarted with backoff: %v", last)
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, fmt.Errorf("the stdio MCP server is not running: %w", ctx.Err())
		case <-c.done:
		}
	}
}

func (p *proc) stop() {
	stopProcess(p.cmd, p.dead, stopGrace)
}

// RoundTrip serves the gateway's requests as a Streamable HTTP server.
func (c *child) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.Method {
	case http.MethodPost:
		return c.post(r)
	case http.MethodDelete:
		sid := r.Header.Get(headerSessionID)
		c.mu.Lock()
		ok := c.sessions[sid]
		delete(c.sessions, sid)
		c.mu.Unlock()
		if !ok {
			return answer(r, http.StatusNotFound, nil, nil), nil
		}
		return answer(r, http.StatusOK, nil, nil), nil
	}
	return answer(r, http.StatusMethodNotAllowed, nil, nil), nil // no standalone SSE stream
}

func answer(r *http.Request, status int, h http.Header, body []byte) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r}
}

func (c *child) post(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		return answer(r, http.StatusBadRequest, nil, errorMessage(nil, -32700, "not JSON")), nil
	}
	id, hasID := env["id"]
	var method string
	json.Unmarshal(env["method"], &method)
	switch {
	case method == "":
		return answer(r, http.StatusAccepted, nil, nil), nil // an answer to a request the child never sent through us
	case !hasID:
		c.notify(r, method, body)
		return answer(r, http.StatusAccepted, nil, nil), nil
	case method == "initialize":
		return c.initialize(r, id, env["params"])
	case method == "server/discover": // 2026-07-28: the client falls back to initialize
		return answer(r, http.StatusOK, nil, errorMessage(id, -32601, "server/discover: this stdio server is served with sessions; initialize")), nil
	}
	if !c.hasSession(r.Header.Get(headerSessionID)) {
		return answer(r, http.StatusNotFound, nil, errorMessage(id, CodeUpstream, "session not found")), nil
	}
	p, err := c.running(r.Context())
	if err != nil {
		return answer(r, http.StatusOK, nil, errorMessage(id, CodeUpstream, "agentid gateway: "+err.Error())), nil
	}
	ans, err := c.call(r.Context(), p, method, env["params"])
	if err != nil {
		return answer(r, http.StatusOK, nil, errorMessage(id, CodeUpstream, "agentid gateway: "+err.Error()+"; it is being restarted")), nil
	}
	return answer(r, http.StatusOK, nil, withID(ans, id)), nil
}

func (c *child) hasSession(sid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[sid]
}

// notify passes a client's notification on (notifications/initialized
// once per child; cancellations are not: the ids are the gateway's).
func (c *child) notify(r *http.Request, method string, body []byte) {
	if !c.hasSession(r.Header.Get(headerSessionID)) {
		return
	}
	c.mu.Lock()
	p := c.cur
	c.mu.Unlock()
	switch {
	case p == nil, method == "notifications/cancelled":
	case method == "notifications/initialized":
		p.notifyInitialized()
	default:
		p.write(json.RawMessage(body))
	}
}

// initialize opens a session: the first one initializes the child, the
// later ones get its answer.
func (c *child) initialize(r *http.Request, id, params json.RawMessage) (*http.Response, error) {
	c.initMu.Lock()
	defer c.initMu.Unlock()
	c.mu.Lock()
	result := c.initResult
	c.mu.Unlock()
	if result == nil {
		p, err := c.running(r.Context())
		if err != nil {
			return answer(r, http.StatusOK, nil, errorMessage(id, CodeUpstream, "agentid gateway: "+err.Error())), nil
		}
		ans, err := c.call(r.Context(), p, "initialize", params)
		if err != nil {
			return answer(r, http.StatusOK, nil, errorMessage(id, CodeUpstream, "agentid gateway: "+err.Error())), nil
		}
		var env struct {
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(ans, &env) != nil || len(env.Result) == 0 {
			return answer(r, http.StatusOK, nil, withID(ans, id)), nil // the child's error
		}
		result = env.Result
		c.mu.Lock()
		c.initParams, c.initResult = params, result
		c.mu.Unlock()
	}
	var b [16]byte
	rand.Read(b[:])
	sid := hex.EncodeToString(b[:])
	c.mu.Lock()
	if len(c.sessions) >= maxSessions {
		for k := range c.sessions { // forget one
			delete(c.sessions, k)
			break
		}
	}
	c.sessions[sid] = true
	c.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": sessionResult(result, params)})
	return answer(r, http.StatusOK, http.Header{headerSessionID: {sid}}, msg), nil
}

// stdioVersions are the protocol versions whose stdio messages are the
// same for what the bridge carries (they differ in the HTTP transport,
// which the bridge speaks itself).
var stdioVersions = []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}

// sessionResult is the child's initialize result for a later session: a
// client asking an older version than the child negotiated with the first
// one gets that version, so that, e.g., a 2025-06-18 client may join a
// child first initialized at 2025-11-25.
func sessionResult(result, params json.RawMessage) json.RawMessage {
	var asked struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	var res map[string]json.RawMessage
	if json.Unmarshal(params, &asked) != nil || json.Unmarshal(result, &res) != nil {
		return result
	}
	var have string
	json.Unmarshal(res["protocolVersion"], &have)
	if asked.ProtocolVersion == have || asked.ProtocolVersion > have || !slices.Contains(stdioVersions, asked.ProtocolVersion) {
		return result
	}
	res["protocolVersion"], _ = json.Marshal(asked.ProtocolVersion)
	out, _ := json.Marshal(res)
	return out
}

// withID is the child's answer with the client's id.
func withID(ans []byte, id json.RawMessage) []byte {
	var env map[string]json.RawMessage
	if json.Unmarshal(ans, &env) != nil {
		return errorMessage(id, CodeUpstream, "agentid gateway: the stdio MCP server's answer is not JSON")
	}
	env["id"] = id
	b, _ := json.Marshal(env)
	return b
}

func (c *child) healthy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		return nil
	}
	if c.lastErr != nil {
		return fmt.Errorf("the stdio MCP server is not running: %v", c.lastErr)
	}
	return errors.New("the stdio MCP server is starting")
}

// stderrLog is the child's stderr: each line is logged until StderrBytes
// were logged since the child's start, then one line says how much was
// dropped; the last StderrBytes are kept (Tail).
type stderrLog struct {
	mu      sync.Mutex
	max     int
	log     *slog.Logger
	logged  int
	dropped int
	partial []byte
	tail    []byte
}

func newStderrLog(max int, log *slog.Logger) *stderrLog { return &stderrLog{max: max, log: log} }

func (s *stderrLog) reset() {
	s.mu.Lock()
	if s.dropped > 0 {
		s.log.Warn("mcp gateway: stdio MCP server stderr over the limit, not logged", "bytes", s.dropped)
	}
	s.logged, s.dropped, s.partial = 0, 0, nil
	s.mu.Unlock()
}

func (s *stderrLog) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tail = append(s.tail, b...)
	if len(s.tail) > s.max {
		s.tail = append(s.tail[:0:0], s.tail[len(s.tail)-s.max:]...)
	}
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			if len(s.partial) > s.max { // a line without end: log what fits
				s.emit(s.partial)
				s.partial = nil
			}
			return len(b), nil
		}
		s.emit(s.partial[:i])
		s.partial = s.partial[i+1:]
	}
}

func (s *stderrLog) emit(line []byte) {
	if s.logged+len(line) > s.max {
		if s.dropped == 0 {
			s.log.Warn("mcp gateway: stdio MCP server stderr reached stderr_log_bytes; the rest is not logged", "limit", s.max)
		}
		s.dropped += len(line) + 1
		return
	}
	s.logged += len(line) + 1
	s.log.Info("mcp gateway: stdio MCP server", "stderr", string(line))
}

// Tail is the last bytes the child wrote to stderr.
func (s *stderrLog) Tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.tail)
}
