package chunkserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/blobbatch"
)

// WriteOp is one write the data API is asked to perform.
type WriteOp struct {
	Kind   string // "put", "delete", "create", "seal", "compact", "import", "replicate", "drop", "fill"
	Volume raisfs.VolumeID
	Hash   raisfs.Hash // zero for volume-level operations
}

// Authorizer decides whether a write may proceed. Every write of the data
// API passes through it, so master-signed write tokens plug in here.
// Implementations must be safe for concurrent use. A nil error allows the
// write; an error should wrap raisfs.ErrPermissionDenied.
type Authorizer interface {
	AuthorizeWrite(token string, op WriteOp) error
}

// AllowAll is the Authorizer used until the master issues write tokens.
type AllowAll struct{}

// AuthorizeWrite implements Authorizer.
func (AllowAll) AuthorizeWrite(string, WriteOp) error { return nil }

// Server serves a Store over HTTP: the data API under /v1/, /healthz and
// /metrics. It is an http.Handler; the caller owns the listener and the
// http.Server, and closes the Store after shutting the http.Server down.
type Server struct {
	id    raisfs.NodeID
	store *Store
	auth  Authorizer
	log   *slog.Logger
	mux   *http.ServeMux
	peers *http.Client // pulls volumes from other chunk servers
}

// NewServer returns a handler for store. auth may be nil (AllowAll); logger
// may be nil (slog.Default()).
func NewServer(id raisfs.NodeID, store *Store, auth Authorizer, logger *slog.Logger) *Server {
	if auth == nil {
		auth = AllowAll{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{id: id, store: store, auth: auth, log: logger.With(LogKeySubsystem, "http"), mux: http.NewServeMux(),
		peers: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, ResponseHeaderTimeout: time.Minute}}}
	s.route("GET /healthz", "health", s.health)
	s.route("GET /v1/status", "status", s.status)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(store.metrics.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.route("PUT /v1/volumes/{vid}", "create", s.createVolume)
	s.route("POST /v1/volumes/{vid}/seal", "seal", s.sealVolume)
	s.route("POST /v1/volumes/{vid}/compact", "compact", s.compactVolume)
	s.route("GET /v1/volumes/{vid}/needles", "list", s.listNeedles)
	s.route("GET /v1/volumes/{vid}/stream", "stream", s.streamVolume)
	s.route("POST /v1/volumes/{vid}/import", "import", s.importVolume)
	s.route("POST /v1/volumes/{vid}/replicate", "replicate", s.replicateVolume)
	s.route("DELETE /v1/volumes/{vid}", "drop", s.dropVolume)
	s.route("POST /v1/volumes/{vid}/blobs/{hash}/fill", "fill", s.fillBlob)
	s.route("GET /v1/volumes/{vid}", "volume", s.volumeStatus)
	s.route("PUT /v1/volumes/{vid}/blobs/{hash}", "put", s.putBlob)
	s.route("POST /v1/volumes/{vid}/blobs", "put_batch", s.putBatch)
	s.route("GET /v1/volumes/{vid}/blobs/{hash}", "get", s.getBlob) // also HEAD
	s.route("DELETE /v1/volumes/{vid}/blobs/{hash}", "delete", s.deleteBlob)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// idleBody ends a request body whose client stops sending: each Read may
// wait at most d for bytes (a read deadline on the connection, moved
// forward at every Read). Once the body has ended the deadline is lifted,
// so that the server's own watch for the client going away while the
// handler works is not cut short.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	d    time.Duration
	done bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	if err := b.rc.SetReadDeadline(time.Now().Add(b.d)); err != nil {
		b.done = true // a connection without deadlines: read as is
		return b.ReadCloser.Read(p)
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.done = true
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// The deadline stays: the server's attempt to discard the rest
			// of the body before answering fails at once too, and the
			// connection is closed after the answer.
			return n, fmt.Errorf("request body: no bytes for %s: %w", b.d, raisfs.ErrInvalidArgument)
		}
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (s *Server) route(pattern, op string, h func(http.ResponseWriter, *http.Request) error) {
	m := s.store.metrics
	lat := m.latency.WithLabelValues(op)
	var byCode sync.Map // status code → prometheus.Counter, resolved once
	count := func(code string) {
		c, ok := byCode.Load(code)
		if !ok {
			c, _ = byCode.LoadOrStore(code, m.requests.WithLabelValues(op, code))
		}
		c.(prometheus.Counter).Inc()
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var ib *idleBody
		if d := s.store.cfg.BodyIdleTimeout; d > 0 && r.Body != nil && r.Body != http.NoBody {
			ib = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: d}
			r.Body = ib
		}
		sw := &statusWriter{ResponseWriter: w}
		if err := h(sw, r); err != nil {
			if ib != nil && !ib.done && sw.code == 0 {
				// Refused before the body was read to its end: net/http
				// reads what is left (up to 256 KiB) before it answers, so
				// that the client, still sending, gets the answer and not
				// a reset connection. It reads with no deadline, so a
				// client that stalls would hold the answer and the
				// connection: give that read the idle timeout too.
				ib.rc.SetReadDeadline(time.Now().Add(ib.d))
			}
			if sw.code != 0 {
				// Headers are gone: abort so the client sees a broken
				// response, never a complete-looking one.
				s.log.Warn("aborting response", "op", op, "path", r.URL.Path, "err", err)
				count("aborted")
				panic(http.ErrAbortHandler)
			}
			s.writeError(sw, r, op, err)
		}
		lat.Observe(time.Since(start).Seconds())
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		count(strconv.Itoa(code))
	})
}

// errorTable maps domain errors to HTTP status and a stable error code, the
// one translation table of this boundary. The client maps codes back to the
// same sentinels.
var errorTable = []struct {
	err  error
	code int
	name string
}{
	{raisfs.ErrNotFound, http.StatusNotFound, "not_found"},
	{raisfs.ErrInvalidArgument, http.StatusBadRequest, "invalid_argument"},
	{raisfs.ErrHashMismatch, http.StatusUnprocessableEntity, "hash_mismatch"},
	{raisfs.ErrSizeMismatch, http.StatusBadRequest, "size_mismatch"},
	{raisfs.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{raisfs.ErrCorrupt, http.StatusInternalServerError, "corrupt"},
	{raisfs.ErrNoSpace, http.StatusInsufficientStorage, "no_space"},
	{raisfs.ErrSealed, http.StatusConflict, "sealed"},
	{raisfs.ErrExists, http.StatusConflict, "exists"},
	{raisfs.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{raisfs.ErrPermissionDenied, http.StatusForbidden, "permission_denied"},
	{raisfs.ErrLeaseExpired, http.StatusForbidden, "lease_expired"},
}

// ErrorHeader carries the stable error code of a failed request.
const ErrorHeader = "X-Rais-Error"

// ErrorBody is the JSON body of every failed request.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify returns err's HTTP status and stable code.
func classify(err error) (code int, name string) {
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.code, e.name
		}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "too_large"
	}
	return http.StatusInternalServerError, "internal"
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, op string, err error) {
	code, name := classify(err)
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "op", op, "path", r.URL.Path, "err", err)
	}
	hd := w.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "ETag", "Accept-Ranges"} {
		hd.Del(k)
	}
	hd.Set("Content-Type", "application/json")
	hd.Set(ErrorHeader, name)
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		json.NewEncoder(w).Encode(ErrorBody{Code: name, Message: err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}

func pathVolume(r *http.Request) (raisfs.VolumeID, error) {
	return raisfs.ParseVolumeID(r.PathValue("vid"))
}

func pathBlob(r *http.Request) (raisfs.VolumeID, raisfs.Hash, error) {
	vid, err := pathVolume(r)
	if err != nil {
		return 0, raisfs.Hash{}, err
	}
	h, err := raisfs.ParseHash(r.PathValue("hash"))
	return vid, h, err
}

func (s *Server) authorize(r *http.Request, op WriteOp) error {
	return s.authorizeToken(r.Header.Get(raisfs.LeaseHeader), op)
}

// authorizeToken is authorize for a lease that travels in a request's
// body (one per blob of a batch).
func (s *Server) authorizeToken(token string, op WriteOp) error {
	if err := s.auth.AuthorizeWrite(token, op); err != nil {
		return fmt.Errorf("%s %s: %w", op.Kind, op.Volume, err)
	}
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	if s.store.Closed() {
		return fmt.Errorf("store closed: %w", raisfs.ErrUnavailable)
	}
	_, err := w.Write([]byte("ok\n"))
	return err
}

// StatusResponse is the body of GET /v1/status.
type StatusResponse struct {
	ID raisfs.NodeID `json:"id"`
	Status
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, StatusResponse{ID: s.id, Status: s.store.Status()})
}

func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "create", Volume: vid}); err != nil {
		return err
	}
	if err := s.store.CreateVolume(r.Context(), vid); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) sealVolume(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "seal", Volume: vid}); err != nil {
		return err
	}
	if err := s.store.Seal(r.Context(), vid); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) compactVolume(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "compact", Volume: vid}); err != nil {
		return err
	}
	res, err := s.store.Compact(r.Context(), vid)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// NeedleList is the body of GET /v1/volumes/{vid}/needles.
type NeedleList struct {
	Needles []NeedleJSON `json:"needles"`
	// Next is the value of ?after= for the next page; empty on the last.
	Next string `json:"next,omitempty"`
}

// NeedleJSON is one entry of a NeedleList.
type NeedleJSON struct {
	Hash  string `json:"hash"`
	Size  int64  `json:"size"`
	State string `json:"state"`
}

const maxListLimit = 10000

func (s *Server) listNeedles(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	var after raisfs.Hash
	if a := r.URL.Query().Get("after"); a != "" {
		if after, err = raisfs.ParseHash(a); err != nil {
			return err
		}
	}
	limit := 1000
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 || n > maxListLimit {
			return fmt.Errorf("limit %.20q: want 1..%d: %w", l, maxListLimit, raisfs.ErrInvalidArgument)
		}
		limit = n
	}
	ns, more, err := s.store.List(r.Context(), vid, after, limit)
	if err != nil {
		return err
	}
	out := NeedleList{Needles: make([]NeedleJSON, len(ns))}
	for i, n := range ns {
		out.Needles[i] = NeedleJSON{Hash: n.Hash.String(), Size: n.Size, State: n.State}
	}
	if more {
		out.Next = ns[len(ns)-1].Hash.String()
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) streamVolume(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = s.store.StreamVolume(r.Context(), vid, w, func(n int64) {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	})
	return err
}

func (s *Server) importVolume(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "import", Volume: vid}); err != nil {
		return err
	}
	if err := s.store.ImportVolume(r.Context(), vid, r.Body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

// ReplicateRequest asks a chunk server to copy a sealed volume from a peer
// (repair, drain, rebalance): it pulls the peer's stream and imports it,
// verifying every needle, so the bytes go server to server.
type ReplicateRequest struct {
	Source string `json:"source"` // the peer's HOST:PORT
	// Replace drops a local copy of the volume first: the masters ask
	// only when this server is not a member, so such a copy is stale or
	// a leftover of an interrupted copy.
	Replace bool `json:"replace,omitempty"`
	// BytesPerSec limits the copy's read rate (0: unlimited), so repair
	// leaves bandwidth and disk time to clients.
	BytesPerSec int64 `json:"bytes_per_sec,omitempty"`
}

func (s *Server) replicateVolume(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "replicate", Volume: vid}); err != nil {
		return err
	}
	var req ReplicateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Source == "" {
		return fmt.Errorf("replicate request: want JSON with a source: %w", raisfs.ErrInvalidArgument)
	}
	st, err := s.replicate(r.Context(), vid, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, st)
}

func (s *Server) volumeStatus(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	st, err := s.store.VolumeStatus(vid)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) dropVolume(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "drop", Volume: vid}); err != nil {
		return err
	}
	if err := s.store.DropVolume(r.Context(), vid); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) putBlob(w http.ResponseWriter, r *http.Request) error {
	vid, h, err := pathBlob(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "put", Volume: vid, Hash: h}); err != nil {
		return err
	}
	max := s.store.cfg.MaxBlobSize
	if r.ContentLength > max {
		return fmt.Errorf("body of %d bytes exceeds limit %d: %w", r.ContentLength, max, raisfs.ErrTooLarge)
	}
	body := http.MaxBytesReader(w, r.Body, max+1)
	created, err := s.store.Put(r.Context(), vid, h, body, r.ContentLength)
	if err != nil {
		return err
	}
	if created {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

// maxBatchItems and maxBatchBytes bound one batch upload: it is read
// whole into memory before anything is written, so that a malformed or
// torn batch stores nothing.
const (
	maxBatchItems = 1024
	maxBatchBytes = 32 << 20
	// pooledBatchBytes: batches up to this size (the SDK's carry at most
	// 4 MiB of bodies, plus their item headers) are read into a pooled
	// buffer of their declared length before any byte arrives; larger ones
	// grow as their bytes come, so a client that declares much and sends
	// little pins little.
	pooledBatchBytes = 5 << 20
)

// putBatch stores several blobs of one volume (api/blobbatch), each under
// its own lease: one request, and their needles share group commits. The
// answer is 200 with one result per item, each as its single PUT would
// have answered; a malformed batch is refused whole.
func (s *Server) putBatch(w http.ResponseWriter, r *http.Request) error {
	vid, err := pathVolume(r)
	if err != nil {
		return err
	}
	if r.ContentLength > maxBatchBytes {
		return fmt.Errorf("batch of %d bytes exceeds limit %d: %w", r.ContentLength, maxBatchBytes, raisfs.ErrTooLarge)
	}
	body := http.MaxBytesReader(w, r.Body, maxBatchBytes)
	var items []blobbatch.Item
	if n := r.ContentLength; n >= 0 && n <= pooledBatchBytes {
		// The usual case (the SDK sends the length): one pooled buffer,
		// items parsed in place, given back once PutMany has copied them.
		buf := getBuf(int(n))
		defer putBuf(buf)
		if k, err := io.ReadFull(body, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("batch: %d of %d bytes, cut short: %w", k, n, raisfs.ErrInvalidArgument)
			}
			return fmt.Errorf("batch: read after %d bytes: %w", k, err)
		}
		items, err = blobbatch.Parse(buf, maxBatchItems, s.store.cfg.MaxBlobSize)
	} else {
		items, err = blobbatch.Decode(body, maxBatchItems, s.store.cfg.MaxBlobSize)
	}
	if err != nil {
		return err
	}
	results := make([]blobbatch.Result, len(items))
	var blobs []BlobBody
	var idx []int
	for i, it := range items {
		if err := s.authorizeToken(it.Lease, WriteOp{Kind: "put", Volume: vid, Hash: it.Hash}); err != nil {
			results[i] = s.batchResult(vid, it.Hash, false, err)
			continue
		}
		blobs = append(blobs, BlobBody{Hash: it.Hash, Body: it.Body})
		idx = append(idx, i)
	}
	created, errs := s.store.PutMany(r.Context(), vid, blobs)
	for j, i := range idx {
		results[i] = s.batchResult(vid, blobs[j].Hash, created[j], errs[j])
	}
	return writeJSON(w, http.StatusOK, blobbatch.Response{Results: results})
}

// batchResult is one blob's answer in a batch: what its single PUT would
// have answered.
func (s *Server) batchResult(vid raisfs.VolumeID, h raisfs.Hash, created bool, err error) blobbatch.Result {
	switch {
	case err != nil:
		code, name := classify(err)
		if code == http.StatusInternalServerError {
			s.log.Error("batch put failed", "volume", vid, "hash", h, "err", err)
		}
		return blobbatch.Result{Status: code, Code: name, Message: err.Error()}
	case created:
		return blobbatch.Result{Status: http.StatusCreated}
	default:
		return blobbatch.Result{Status: http.StatusOK}
	}
}

// parseRange parses a single-range "bytes=" header against a blob of size
// bytes. ok is false when there is no usable Range header (serve it all).
func parseRange(hdr string, size int64) (start, length int64, ok bool, err error) {
	if hdr == "" {
		return 0, size, false, nil
	}
	spec, found := strings.CutPrefix(hdr, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size, false, nil // unknown unit or multi-range: full body, as RFC 9110 allows
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, errBadRange
	}
	if a == "" { // suffix: last b bytes
		n, perr := strconv.ParseInt(b, 10, 64)
		if perr != nil || n <= 0 {
			return 0, 0, false, errBadRange
		}
		n = min(n, size)
		if n == 0 {
			return 0, 0, false, errBadRange
		}
		return size - n, n, true, nil
	}
	first, perr := strconv.ParseInt(a, 10, 64)
	if perr != nil || first < 0 || first >= size {
		return 0, 0, false, errBadRange
	}
	last := size - 1
	if b != "" {
		l, perr := strconv.ParseInt(b, 10, 64)
		if perr != nil || l < first {
			return 0, 0, false, errBadRange
		}
		last = min(l, size-1)
	}
	return first, last - first + 1, true, nil
}

var errBadRange = errors.New("unsatisfiable range")

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) error {
	vid, h, err := pathBlob(r)
	if err != nil {
		return err
	}
	b, err := s.store.Get(r.Context(), vid, h)
	if err != nil {
		return err
	}
	defer b.Close()
	start, length, partial, err := parseRange(r.Header.Get("Range"), b.Size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", b.Size))
		w.Header().Set(ErrorHeader, "invalid_range")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return nil
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("ETag", `"`+h.String()+`"`)
	hd.Set("Content-Length", strconv.FormatInt(length, 10))
	code := http.StatusOK
	if partial {
		hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, b.Size))
		code = http.StatusPartialContent
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(code)
		return nil
	}
	// Small blobs were verified whole by Get; larger ones are verified
	// block by block as they stream, and a bad block aborts the response.
	if b.body == nil {
		// Verify the first block before committing to a status code.
		w = &lazyHeader{ResponseWriter: w, code: code}
	} else {
		w.WriteHeader(code)
	}
	n, err := b.WriteRange(w, start, length)
	s.store.metrics.bytesOut.Add(float64(n))
	if err != nil && errors.Is(err, raisfs.ErrCorrupt) {
		return err
	}
	if err != nil {
		// The client went away: nothing to report to it.
		s.log.Debug("get interrupted", LogKeyVolume, vid, LogKeyHash, h, "err", err)
		return nil
	}
	if lw, ok := w.(*lazyHeader); ok && !lw.sent {
		lw.ResponseWriter.WriteHeader(code)
	}
	return nil
}

// lazyHeader delays WriteHeader until the first byte, so an error found
// before any byte is verified still becomes a proper error response.
type lazyHeader struct {
	http.ResponseWriter
	code int
	sent bool
}

func (l *lazyHeader) Write(p []byte) (int, error) {
	if !l.sent {
		l.sent = true
		l.ResponseWriter.WriteHeader(l.code)
	}
	return l.ResponseWriter.Write(p)
}

func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request) error {
	vid, h, err := pathBlob(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "delete", Volume: vid, Hash: h}); err != nil {
		return err
	}
	if err := s.store.Delete(r.Context(), vid, h); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
