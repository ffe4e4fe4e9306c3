package chunkserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"golang.org/x/time/rate"

	"github.com/raisfs/raisfs"
)

// replicate copies sealed volume id from the peer req.Source: it pulls the
// peer's stream and imports it (every needle verified, nothing visible
// until the whole volume is). It returns the new copy's status, which the
// masters compare with the source's before they make this server a member.
func (s *Server) replicate(ctx context.Context, id raisfs.VolumeID, req ReplicateRequest) (VolumeStatus, error) {
	if req.Replace {
		if err := s.store.DropVolume(ctx, id); err != nil && !errors.Is(err, raisfs.ErrNotFound) {
			return VolumeStatus{}, err
		}
	}
	u := url.URL{Scheme: "http", Host: req.Source, Path: fmt.Sprintf("/v1/volumes/%d/stream", id)}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return VolumeStatus{}, fmt.Errorf("replicate volume %s from %q: %w", id, req.Source, raisfs.ErrInvalidArgument)
	}
	resp, err := s.peers.Do(hreq)
	if err != nil {
		return VolumeStatus{}, fmt.Errorf("replicate volume %s from %s: %w: %w", id, req.Source, raisfs.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return VolumeStatus{}, fmt.Errorf("replicate volume %s from %s: source answered %d (%s): %w",
			id, req.Source, resp.StatusCode, resp.Header.Get(ErrorHeader), raisfs.ErrUnavailable)
	}
	if resp.ContentLength < 0 {
		return VolumeStatus{}, fmt.Errorf("replicate volume %s from %s: stream without a length: %w", id, req.Source, raisfs.ErrUnavailable)
	}
	var body io.Reader = &cutReader{r: resp.Body, source: req.Source}
	if req.BytesPerSec > 0 {
		burst := int(min(req.BytesPerSec, 1<<20))
		body = &rateReader{ctx: ctx, r: body, lim: rate.NewLimiter(rate.Limit(req.BytesPerSec), burst)}
	}
	if err := s.store.ImportVolume(ctx, id, body); err != nil {
		return VolumeStatus{}, err
	}
	s.log.Info("volume replicated", LogKeyVolume, id, "source", req.Source, "bytes", resp.ContentLength)
	return s.store.VolumeStatus(id)
}

// cutReader turns a stream cut short (the source died mid-copy) into an
// error of its own: ImportVolume takes io.ErrUnexpectedEOF for the end of
// a stream, and a copy that ends at a needle boundary would otherwise look
// whole.
type cutReader struct {
	r      io.Reader
	source string
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("stream from %s cut short: %w", c.source, raisfs.ErrUnavailable)
	}
	return n, err
}

// rateReader limits how fast a copy reads.
type rateReader struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

func (r *rateReader) Read(p []byte) (int, error) {
	if len(p) > r.lim.Burst() {
		p = p[:r.lim.Burst()]
	}
	n, err := r.r.Read(p)
	if n > 0 {
		if werr := r.lim.WaitN(r.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// FillRequest asks a chunk server to put back one blob its copy of a
// volume lacks, from a peer that has it (anti-entropy: a gap is filled
// without copying the whole volume).
type FillRequest struct {
	Source string `json:"source"` // the peer's HOST:PORT
}

func (s *Server) fillBlob(w http.ResponseWriter, r *http.Request) error {
	vid, h, err := pathBlob(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, WriteOp{Kind: "fill", Volume: vid}); err != nil {
		return err
	}
	var req FillRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Source == "" {
		return fmt.Errorf("fill request: want JSON with a source: %w", raisfs.ErrInvalidArgument)
	}
	u := url.URL{Scheme: "http", Host: req.Source, Path: fmt.Sprintf("/v1/volumes/%d/blobs/%s", vid, h)}
	greq, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("fill %s/%s from %q: %w", vid, h, req.Source, raisfs.ErrInvalidArgument)
	}
	resp, err := s.peers.Do(greq)
	if err != nil {
		return fmt.Errorf("fill %s/%s from %s: %w: %w", vid, h, req.Source, raisfs.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fill %s/%s: source %s answered %d (%s): %w", vid, h, req.Source, resp.StatusCode, resp.Header.Get(ErrorHeader), raisfs.ErrUnavailable)
	}
	// The body is hashed as it arrives: bytes that do not match h are
	// refused, whatever the source sent.
	created, err := s.store.Fill(r.Context(), vid, h, &cutReader{r: resp.Body, source: req.Source}, resp.ContentLength)
	if err != nil {
		return err
	}
	if created {
		s.log.Info("blob filled", LogKeyVolume, vid, LogKeyHash, h, "source", req.Source)
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}
