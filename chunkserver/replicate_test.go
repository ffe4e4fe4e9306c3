package chunkserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/raisfs/raisfs"
)

func replicateBody(source string, replace bool) *strings.Reader {
	b, _ := json.Marshal(ReplicateRequest{Source: source, Replace: replace, BytesPerSec: 64 << 20})
	return strings.NewReader(string(b))
}

func hostOf(t *testing.T, ts *httptest.Server) string {
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// A server copies a sealed volume from a peer, server to server; the copy
// serves every blob, and what the source did not seal, or a stream cut
// short, is refused and leaves nothing behind.
func TestServer_ReplicateFromPeer(t *testing.T) {
	src, dst := mustServe(t, nil, nil), mustServe(t, nil, nil)
	ctx := context.Background()
	if err := src.store.CreateVolume(ctx, 5); err != nil {
		t.Fatal(err)
	}
	bodies := map[raisfs.Hash][]byte{}
	for i := range 30 {
		body, h := payload(uint64(i), 700*i)
		mustPut(t, src.store, 5, body, h)
		bodies[h] = body
	}
	// Only sealed volumes are copied whole.
	dst.expect(t, "POST", "/v1/volumes/5/replicate", replicateBody(hostOf(t, src.Server), false), http.StatusServiceUnavailable, "unavailable")
	if err := src.store.Seal(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "{", `{"source":""}`} {
		dst.expect(t, "POST", "/v1/volumes/5/replicate", strings.NewReader(bad), http.StatusBadRequest, "invalid_argument")
	}
	out := dst.expect(t, "POST", "/v1/volumes/5/replicate", replicateBody(hostOf(t, src.Server), false), http.StatusCreated, "")
	var st VolumeStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	var want VolumeStatus
	if err := json.Unmarshal(src.expect(t, "GET", "/v1/volumes/5", nil, http.StatusOK, ""), &want); err != nil {
		t.Fatal(err)
	}
	if st.LiveBlobs != want.LiveBlobs || st.SizeBytes != want.SizeBytes || !st.Sealed {
		t.Fatalf("copy status %+v, source %+v", st, want)
	}
	for h, body := range bodies {
		if got := dst.expect(t, "GET", blobPath(5, h), nil, http.StatusOK, ""); !bytes.Equal(got, body) {
			t.Fatalf("blob %s differs on the copy", h)
		}
	}
	// A second copy onto a server that has one is refused unless asked
	// to replace it.
	dst.expect(t, "POST", "/v1/volumes/5/replicate", replicateBody(hostOf(t, src.Server), false), http.StatusConflict, "exists")
	dst.expect(t, "POST", "/v1/volumes/5/replicate", replicateBody(hostOf(t, src.Server), true), http.StatusCreated, "")

	// A source that dies mid-stream, even at a needle boundary.
	var stream bytes.Buffer
	if _, err := src.store.StreamVolume(ctx, 5, &stream, nil); err != nil {
		t.Fatal(err)
	}
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(stream.Len()))
		w.Write(stream.Bytes()[:stream.Len()/2])
		panic(http.ErrAbortHandler)
	}))
	defer cut.Close()
	other := mustServe(t, nil, nil)
	other.expect(t, "POST", "/v1/volumes/5/replicate", replicateBody(hostOf(t, cut), false), http.StatusServiceUnavailable, "unavailable")
	if len(other.store.Status().Volumes) != 0 || len(tmpFiles(t, other.cfg.Dirs[0])) != 0 {
		t.Fatal("a cut stream left something behind")
	}
	// An unreachable source.
	other.expect(t, "POST", "/v1/volumes/5/replicate", replicateBody("127.0.0.1:1", false), http.StatusServiceUnavailable, "unavailable")

	// Drop removes the copy and its files.
	dst.expect(t, "DELETE", "/v1/volumes/5", nil, http.StatusNoContent, "")
	dst.expect(t, "GET", blobPath(5, firstKey(bodies)), nil, http.StatusNotFound, "not_found")
	dst.expect(t, "DELETE", "/v1/volumes/5", nil, http.StatusNotFound, "not_found")
	for _, p := range []string{dataPath(dst.cfg.Dirs[0], 5), indexPath(dst.cfg.Dirs[0], 5)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s after drop: %v", p, err)
		}
	}
}

func firstKey(m map[raisfs.Hash][]byte) raisfs.Hash {
	for h := range m {
		return h
	}
	panic(fmt.Sprint("empty map"))
}

// A copy that lacks a blob gets it back from a peer, even though the
// volume is sealed; a source that sends other bytes is refused.
func TestServer_FillFromPeer(t *testing.T) {
	src, dst := mustServe(t, nil, nil), mustServe(t, nil, nil)
	ctx := context.Background()
	for _, s := range []*testServer{src, dst} {
		if err := s.store.CreateVolume(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	a, ha := payload(1, 5000)
	b, hb := payload(2, 300<<10)
	mustPut(t, src.store, 2, a, ha)
	mustPut(t, src.store, 2, b, hb)
	mustPut(t, dst.store, 2, a, ha)
	if err := dst.store.Seal(ctx, 2); err != nil {
		t.Fatal(err)
	}
	fill := func(ts *testServer, h raisfs.Hash, source string, code int, errCode string) {
		t.Helper()
		body, _ := json.Marshal(FillRequest{Source: source})
		ts.expect(t, "POST", fmt.Sprintf("/v1/volumes/2/blobs/%s/fill", h), bytes.NewReader(body), code, errCode)
	}
	dst.expect(t, "PUT", blobPath(2, hb), bytes.NewReader(b), http.StatusConflict, "sealed") // a client cannot
	fill(dst, hb, hostOf(t, src.Server), http.StatusCreated, "")
	fill(dst, hb, hostOf(t, src.Server), http.StatusOK, "") // has it now
	if got := dst.expect(t, "GET", blobPath(2, hb), nil, http.StatusOK, ""); !bytes.Equal(got, b) {
		t.Fatal("filled blob differs")
	}
	if st, _ := dst.store.VolumeStatus(2); !st.Sealed || st.LiveBlobs != 2 {
		t.Fatalf("after the fill: %+v", st)
	}
	// A lying source.
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(a) }))
	defer liar.Close()
	_, hc := payload(3, 4000)
	fill(dst, hc, hostOf(t, liar), http.StatusUnprocessableEntity, "hash_mismatch")
	fill(dst, hc, hostOf(t, src.Server), http.StatusServiceUnavailable, "unavailable") // the source lacks it
	dst.expect(t, "POST", fmt.Sprintf("/v1/volumes/2/blobs/%s/fill", hc), strings.NewReader("{}"), http.StatusBadRequest, "invalid_argument")
	// Survives a restart: the filled needle after the seal is recovered.
	dst.store.Close()
	re := mustOpen(t, dst.cfg)
	if st, _ := re.VolumeStatus(2); !st.Sealed || st.LiveBlobs != 2 {
		t.Fatalf("after a restart: %+v", st)
	}
}
