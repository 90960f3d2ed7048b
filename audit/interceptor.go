package audit

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/outpost-run/outpost/acl"
)

// Which requests are recorded: every write, and every request refused for
// who made it. A read (Get*, List*, Read*, Status, Members, RaftPeers…)
// that succeeds, or fails for another reason, is not; the cluster
// service's server-to-server calls are recorded only when refused, as the
// write they carry was recorded by the server its client called.

const (
	clusterService = "/outpost.v1.ClusterService/"
	runnerStream   = "/outpost.v1.RunnerService/Connect"
	keyringMethod  = "/outpost.v1.KeyringService/GossipKeyring"
)

// readPrefixes are the method names that only read.
var readPrefixes = []string{"Get", "List", "Read", "Status", "Members", "RaftPeers", "Watch"}

// isRead reports whether procedure only reads; msg, when the answer
// depends on it (the keyring's list), is the request.
func isRead(procedure string, msg proto.Message) bool {
	if procedure == keyringMethod {
		op := stringField(msg, "op")
		return op == "" || op == "list"
	}
	name := procedure[strings.LastIndexByte(procedure, '/')+1:]
	for _, p := range readPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// refused reports whether a code says the caller may not do this.
func refused(code connect.Code) bool {
	return code == connect.CodePermissionDenied || code == connect.CodeUnauthenticated
}

// objectFields are the request fields that name what a request is about,
// in the order they are written. Only these are ever read from a request:
// none of them holds a secret (a token, a runner secret, a password or an
// environment value is never in one of them).
var objectFields = []string{"project", "job", "job_id", "id", "runner_id", "name", "user", "workspace", "action", "op"}

// Object describes the object of a request from its id fields, e.g.
// "project=web job=deploy".
func Object(msg proto.Message) string {
	var b strings.Builder
	for _, f := range objectFields {
		v := stringField(msg, f)
		if v == "" {
			continue
		}
		if len(v) > 128 {
			v = v[:128] + "…"
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f + "=" + v)
	}
	return b.String()
}

// stringField returns msg's string field name, or "".
func stringField(msg proto.Message, name string) string {
	if msg == nil {
		return ""
	}
	m := msg.ProtoReflect()
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
		return ""
	}
	return m.Get(fd).String()
}

// result is how a record states an outcome: "ok", or code: message.
func result(err error) string {
	if err == nil {
		return "ok"
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String() + ": " + ce.Message()
	}
	return connect.CodeOf(err).String() + ": " + err.Error()
}

// Interceptor records connect requests in l. It must be the outermost
// interceptor: it opens the identity slot (acl.WithSlot) that the ACL
// interceptor inside it fills, and reads it once the call is over.
func Interceptor(l *Log) connect.Interceptor { return &interceptor{l: l} }

type interceptor struct{ l *Log }

func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, who := acl.WithSlot(ctx)
		resp, err := next(ctx, req)
		procedure := req.Spec().Procedure
		msg, _ := req.Any().(proto.Message)
		if i.wanted(procedure, msg, err) {
			i.l.Write(Record{Who: who.Who(), Source: req.Peer().Addr, Method: procedure, Object: Object(msg), Result: result(err)})
		}
		return resp, err
	}
}

func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, who := acl.WithSlot(ctx)
		procedure := conn.Spec().Procedure
		if procedure != runnerStream {
			// Streaming reads (log follows): recorded when refused.
			err := next(ctx, conn)
			if refused(connect.CodeOf(err)) {
				i.l.Write(Record{Who: who.Who(), Source: conn.Peer().Addr, Method: procedure, Result: result(err)})
			}
			return err
		}
		// The runner stream: one record when it registers (its first
		// answer) or is refused, none per message.
		s := &runnerConn{StreamingHandlerConn: conn, l: i.l, who: who}
		err := next(ctx, s)
		s.once.Do(func() {
			i.l.Write(Record{Who: who.Who(), Source: conn.Peer().Addr, Method: procedure, Object: s.object(), Result: result(orEnded(err))})
		})
		return err
	}
}

// orEnded is the outcome of a runner stream that ended before it
// registered: its error, or one saying it ended.
func orEnded(err error) error {
	if err == nil {
		return connect.NewError(connect.CodeCanceled, errors.New("stream ended before it registered"))
	}
	return err
}

// wanted reports whether a finished unary call is recorded.
func (i *interceptor) wanted(procedure string, msg proto.Message, err error) bool {
	code := connect.CodeOf(err)
	if err != nil && refused(code) {
		return true
	}
	if strings.HasPrefix(procedure, clusterService) {
		return false
	}
	return !isRead(procedure, msg)
}

// runnerConn watches a runner stream for its registration.
type runnerConn struct {
	connect.StreamingHandlerConn
	l   *Log
	who *acl.Identity

	mu       sync.Mutex
	runnerID string
	once     sync.Once
}

func (c *runnerConn) object() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runnerID == "" {
		return ""
	}
	return "runner_id=" + c.runnerID
}

// Receive notes the runner id of the first message (its Register).
func (c *runnerConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if err == nil {
		if pm, ok := msg.(proto.Message); ok {
			c.noteRegister(pm)
		}
	}
	return err
}

func (c *runnerConn) noteRegister(msg proto.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runnerID != "" {
		return
	}
	m := msg.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("register")
	if fd == nil || fd.Kind() != protoreflect.MessageKind || !m.Has(fd) {
		return
	}
	c.runnerID = stringField(m.Get(fd).Message().Interface(), "runner_id")
}

// Send records the registration at the stream's first answer.
func (c *runnerConn) Send(msg any) error {
	err := c.StreamingHandlerConn.Send(msg)
	c.once.Do(func() {
		c.l.Write(Record{Who: c.who.Who(), Source: c.Peer().Addr, Method: runnerStream, Object: c.object(), Result: result(err)})
	})
	return err
}

// Middleware records the requests of the non-connect HTTP endpoints
// (PUT /v1/operator/snapshot…) that write or are refused; connect
// procedures pass through to the interceptor.
func Middleware(l *Log, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/outpost.v1.") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, who := acl.WithSlot(r.Context())
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		read := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
		denied := sw.status == http.StatusUnauthorized || sw.status == http.StatusForbidden
		if read && !denied {
			return
		}
		res := "ok"
		if sw.status >= 400 {
			res = "http " + strconv.Itoa(sw.status) + ": " + http.StatusText(sw.status)
		}
		l.Write(Record{Who: who.Who(), Source: r.RemoteAddr, Method: r.Method + " " + r.URL.Path, Result: res})
	})
}

// statusWriter keeps the status code a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines) through the wrapper.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes flushes on for streamed answers.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
