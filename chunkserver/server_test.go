package chunkserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/blobbatch"
)

type testServer struct {
	*httptest.Server
	store *Store
	cfg   Config
	fs    *faultFS
}

func mustServe(t *testing.T, mod func(*Config), auth Authorizer) *testServer {
	t.Helper()
	fs := &faultFS{}
	cfg := testConfig(t, fs)
	if mod != nil {
		mod(&cfg)
	}
	s := mustOpen(t, cfg)
	hs := httptest.NewServer(NewServer("cs-test", s, auth, testLogger(t)))
	t.Cleanup(hs.Close)
	return &testServer{Server: hs, store: s, cfg: cfg, fs: fs}
}

func (ts *testServer) do(t *testing.T, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

func (ts *testServer) expect(t *testing.T, method, path string, body io.Reader, code int, errCode string) []byte {
	t.Helper()
	resp, b := ts.do(t, method, path, body)
	if resp.StatusCode != code || resp.Header.Get(ErrorHeader) != errCode {
		t.Fatalf("%s %s = %d %q (%s), want %d %q", method, path, resp.StatusCode, resp.Header.Get(ErrorHeader), b, code, errCode)
	}
	return b
}

func blobPath(vol int, h raisfs.Hash) string { return fmt.Sprintf("/v1/volumes/%d/blobs/%s", vol, h) }

func TestServer_BlobLifecycle(t *testing.T) {
	ts := mustServe(t, nil, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "") // idempotent
	body, h := payload(1, 3*blockSize+10)
	ts.expect(t, "PUT", blobPath(1, h), bytes.NewReader(body), 201, "")
	ts.expect(t, "PUT", blobPath(1, h), bytes.NewReader(body), 200, "") // already there
	if got := ts.expect(t, "GET", blobPath(1, h), nil, 200, ""); !bytes.Equal(got, body) {
		t.Fatal("GET returned wrong bytes")
	}
	// Uppercase hex names the same blob.
	ts.expect(t, "GET", "/v1/volumes/1/blobs/"+strings.ToUpper(h.String()), nil, 200, "")
	resp, b := ts.do(t, "HEAD", blobPath(1, h), nil)
	if resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != int64(len(body)) || resp.Header.Get("ETag") != `"`+h.String()+`"` {
		t.Fatalf("HEAD = %d, len %d, ETag %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("ETag"))
	}
	for _, tc := range []struct {
		rng        string
		start, end int // end exclusive
	}{
		{"bytes=0-0", 0, 1},
		{"bytes=10-20", 10, 21},
		{"bytes=65530-65545", 65530, 65546},
		{"bytes=196000-", 196000, len(body)},
		{"bytes=-5", len(body) - 5, len(body)},
		{"bytes=100-999999", 100, len(body)},
	} {
		resp, got := ts.do(t, "GET", blobPath(1, h), nil, "Range", tc.rng)
		want := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, len(body))
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != want || !bytes.Equal(got, body[tc.start:tc.end]) {
			t.Fatalf("Range %s = %d %q (%d bytes)", tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"), len(got))
		}
	}
	for _, rng := range []string{"bytes=999999-", "bytes=5-2", "bytes=x-3", "bytes=-0"} {
		resp, _ := ts.do(t, "GET", blobPath(1, h), nil, "Range", rng)
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("Range %s = %d, want 416", rng, resp.StatusCode)
		}
	}
	ts.expect(t, "DELETE", blobPath(1, h), nil, 204, "")
	ts.expect(t, "GET", blobPath(1, h), nil, 404, "not_found")
	ts.expect(t, "DELETE", blobPath(1, raisfs.Hash{5}), nil, 404, "not_found")
}

func TestServer_BadRequests(t *testing.T) {
	ts := mustServe(t, func(c *Config) { c.MaxBlobSize = 1 << 20 }, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	body, h := payload(1, 1000)
	other, otherH := payload(2, 1000)
	big, bigH := payload(3, 1<<20+1)
	for _, tc := range []struct {
		name, method, path string
		body               io.Reader
		code               int
		errCode            string
	}{
		{"wrong hash", "PUT", blobPath(1, h), bytes.NewReader(other), 422, "hash_mismatch"},
		{"oversize", "PUT", blobPath(1, bigH), bytes.NewReader(big), 413, "too_large"},
		{"oversize chunked", "PUT", blobPath(1, bigH), io.MultiReader(bytes.NewReader(big)), 413, "too_large"},
		{"unknown volume", "PUT", blobPath(7, h), bytes.NewReader(body), 404, "not_found"},
		{"unknown volume get", "GET", blobPath(7, h), nil, 404, "not_found"},
		{"short hash", "GET", "/v1/volumes/1/blobs/abc", nil, 400, "invalid_argument"},
		{"long hash", "GET", "/v1/volumes/1/blobs/" + h.String() + "00", nil, 400, "invalid_argument"},
		{"non-hex hash", "PUT", "/v1/volumes/1/blobs/" + strings.Repeat("zz", 32), bytes.NewReader(body), 400, "invalid_argument"},
		{"dot-dot hash", "GET", "/v1/volumes/1/blobs/..%2F..%2F..%2Fetc%2Fpasswd" + strings.Repeat("0", 40), nil, 400, "invalid_argument"},
		{"dot-dot volume", "PUT", "/v1/volumes/..%2F1", nil, 400, "invalid_argument"},
		{"volume zero", "PUT", "/v1/volumes/0", nil, 400, "invalid_argument"},
		{"negative volume", "GET", "/v1/volumes/-1/blobs/" + h.String(), nil, 400, "invalid_argument"},
		{"huge volume", "GET", "/v1/volumes/99999999999999999999999/blobs/" + h.String(), nil, 400, "invalid_argument"},
		{"bad list limit", "GET", "/v1/volumes/1/needles?limit=0", nil, 400, "invalid_argument"},
		{"bad list cursor", "GET", "/v1/volumes/1/needles?after=../x", nil, 400, "invalid_argument"},
		{"stream open volume", "GET", "/v1/volumes/1/stream", nil, 400, "invalid_argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.expect(t, tc.method, tc.path, tc.body, tc.code, tc.errCode)
		})
	}
	ts.expect(t, "GET", blobPath(1, otherH), nil, 404, "not_found")
	if st := ts.store.Status().Volumes[0]; st.SizeBytes != superblockSize {
		t.Fatalf("bad requests changed the volume: %+v", st)
	}
	if tmp := tmpFiles(t, ts.cfg.Dirs[0]); len(tmp) != 0 {
		t.Fatalf("spool files left: %v", tmp)
	}
}

// A client that sends half its body and hangs up leaves nothing behind.
func TestServer_TornUpload(t *testing.T) {
	ts := mustServe(t, func(c *Config) { c.SpoolThreshold = 64 << 10 }, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	for _, n := range []int{5000, 300 << 10} { // in memory, and spooled to a file
		body, h := payload(uint64(n), n)
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", blobPath(1, h), n)
		conn.Write(body[:n/2])
		conn.Close()
		testPoll(t, "the torn put to be rejected", func() bool {
			return counterValue(t, ts, `rais_chunkserver_requests_total{code="400",op="put"}`) >= 1
		})
		ts.expect(t, "GET", blobPath(1, h), nil, 404, "not_found")
		if tmp := tmpFiles(t, ts.cfg.Dirs[0]); len(tmp) != 0 {
			t.Fatalf("spool files left after torn upload: %v", tmp)
		}
		if st := ts.store.Status().Volumes[0]; st.SizeBytes != superblockSize {
			t.Fatalf("torn upload changed the volume: %+v", st)
		}

	}
}

func counterValue(t *testing.T, ts *testServer, series string) float64 {
	t.Helper()
	_, b := ts.do(t, "GET", "/metrics", nil)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

func TestServer_DiskFull(t *testing.T) {
	ts := mustServe(t, func(c *Config) { c.HighWater = 0.9 }, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	ts.fs.setUsage(func(string) DiskUsage { return DiskUsage{Total: 100 << 20, Free: 1 << 20} })
	body, h := payload(1, 1000)
	ts.expect(t, "PUT", blobPath(1, h), bytes.NewReader(body), 507, "no_space")
	ts.expect(t, "PUT", "/v1/volumes/2", nil, 507, "no_space")
	ts.fs.setUsage(nil)
	ts.fs.setWriteErr(enospcAfter(10))
	ts.expect(t, "PUT", blobPath(1, h), bytes.NewReader(body), 507, "no_space")
	ts.fs.setWriteErr(nil)
	ts.expect(t, "PUT", blobPath(1, h), bytes.NewReader(body), 201, "")
}

func TestServer_ConcurrentSameHash(t *testing.T) {
	ts := mustServe(t, nil, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	body, h := payload(9, 20000)
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("PUT", ts.URL+blobPath(1, h), bytes.NewReader(body))
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	created := 0
	for c := range codes {
		switch c {
		case 201:
			created++
		case 200:
		default:
			t.Errorf("concurrent put = %d", c)
		}
	}
	if created != 1 {
		t.Fatalf("%d puts created the blob, want 1", created)
	}
	if st := ts.store.Status().Volumes[0]; st.LiveBlobs != 1 || st.SizeBytes != superblockSize+needleLen(20000) {
		t.Fatalf("volume after concurrent puts: %+v", st)
	}
}

func TestServer_CorruptReads(t *testing.T) {
	ts := mustServe(t, nil, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	small, smallH := payload(1, 2000)
	large, largeH := payload(2, 6*blockSize)
	ts.expect(t, "PUT", blobPath(1, smallH), bytes.NewReader(small), 201, "")
	ts.expect(t, "PUT", blobPath(1, largeH), bytes.NewReader(large), 201, "")
	flipByte(t, dataPath(ts.cfg.Dirs[0], 1), superblockSize+headerSize+5)
	flipByte(t, dataPath(ts.cfg.Dirs[0], 1), superblockSize+needleLen(2000)+headerSize+4*blockSize+1)
	ts.expect(t, "GET", blobPath(1, smallH), nil, 500, "corrupt")
	// The large one streams its good blocks, then the connection breaks:
	// the client must see an error, never a complete-looking body.
	resp, err := ts.Client().Get(ts.URL + blobPath(1, largeH))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("corrupt large blob read completed (%d bytes, status %d)", len(got), resp.StatusCode)
	}
	if !bytes.Equal(got, large[:len(got)]) || len(got) > 4*blockSize {
		t.Fatalf("served %d bytes, some past the bad block or wrong", len(got))
	}
	ts.expect(t, "GET", blobPath(1, largeH), nil, 500, "corrupt")
	if v := counterValue(t, ts, "rais_chunkserver_corrupt_needles_total"); v != 2 {
		t.Fatalf("corrupt_needles_total = %v, want 2", v)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := OSFS{}.OpenFile(path, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	f.ReadAt(b[:], off)
	b[0] ^= 0x20
	f.WriteAt(b[:], off)
}

type denyPuts struct{}

func (denyPuts) AuthorizeWrite(token string, op WriteOp) error {
	if op.Kind == "put" && token != "ok" {
		return fmt.Errorf("no token: %w", raisfs.ErrPermissionDenied)
	}
	return nil
}

func TestServer_WritesGoThroughAuthorizer(t *testing.T) {
	ts := mustServe(t, nil, denyPuts{})
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	body, h := payload(1, 100)
	ts.expect(t, "PUT", blobPath(1, h), bytes.NewReader(body), 403, "permission_denied")
	resp, _ := ts.do(t, "PUT", blobPath(1, h), bytes.NewReader(body), raisfs.LeaseHeader, "ok")
	if resp.StatusCode != 201 {
		t.Fatalf("authorised put = %d", resp.StatusCode)
	}
}

func TestServer_StatusListStreamImport(t *testing.T) {
	a := mustServe(t, nil, nil)
	b := mustServe(t, nil, nil)
	a.expect(t, "PUT", "/v1/volumes/4", nil, 204, "")
	want := map[string][]byte{}
	for i := range 25 {
		body, h := payload(uint64(i), 100*i)
		a.expect(t, "PUT", blobPath(4, h), bytes.NewReader(body), 201, "")
		want[h.String()] = body
	}
	var st StatusResponse
	if err := json.Unmarshal(a.expect(t, "GET", "/v1/status", nil, 200, ""), &st); err != nil {
		t.Fatal(err)
	}
	if st.ID != "cs-test" || len(st.Volumes) != 1 || st.Volumes[0].LiveBlobs != 25 || len(st.Dirs) != 1 || st.Dirs[0].FreeBytes <= 0 {
		t.Fatalf("status = %+v", st)
	}
	seen := 0
	next := ""
	for {
		var page NeedleList
		json.Unmarshal(a.expect(t, "GET", "/v1/volumes/4/needles?limit=7&after="+next, nil, 200, ""), &page)
		for _, n := range page.Needles {
			if _, ok := want[n.Hash]; !ok || n.State != "live" {
				t.Fatalf("listed %+v", n)
			}
			seen++
		}
		if page.Next == "" {
			break
		}
		next = page.Next
	}
	if seen != 25 {
		t.Fatalf("listed %d needles, want 25", seen)
	}
	a.expect(t, "POST", "/v1/volumes/4/seal", nil, 204, "")
	resp, err := a.Client().Get(a.URL + "/v1/volumes/4/stream")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), "POST", b.URL+"/v1/volumes/4/import", resp.Body)
	iresp, err := b.Client().Do(req)
	resp.Body.Close()
	if err != nil || iresp.StatusCode != 201 {
		t.Fatalf("import = %v %v", iresp, err)
	}
	iresp.Body.Close()
	for hs, body := range want {
		h, _ := raisfs.ParseHash(hs)
		if got := b.expect(t, "GET", blobPath(4, h), nil, 200, ""); !bytes.Equal(got, body) {
			t.Fatalf("copied blob %s differs", hs)
		}
	}
	b.expect(t, "POST", "/v1/volumes/4/compact", nil, 200, "")
	if !strings.Contains(string(b.expect(t, "GET", "/healthz", nil, 200, "")), "ok") {
		t.Fatal("healthz not ok")
	}
}

// A batch upload answers each blob as its single PUT would, stores the
// good ones together, and reopens intact.
func TestServer_BatchUpload(t *testing.T) {
	ts := mustServe(t, nil, denyPuts{})
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	held, hh := payload(1, 100)
	if resp, _ := ts.do(t, "PUT", blobPath(1, hh), bytes.NewReader(held), raisfs.LeaseHeader, "ok"); resp.StatusCode != 201 {
		t.Fatalf("single put = %d", resp.StatusCode)
	}
	a, ha := payload(2, 4096)
	b, hb := payload(3, 3*blockSize+7)
	c, hc := payload(4, 10)
	wrong, _ := payload(5, 50)
	items := []blobbatch.Item{
		{Hash: ha, Lease: "ok", Body: a},
		{Hash: hh, Lease: "ok", Body: held},  // held already: 200
		{Hash: hb, Lease: "no", Body: b},     // refused by the authorizer
		{Hash: hc, Lease: "ok", Body: wrong}, // bytes that do not match the hash
		{Hash: hc, Lease: "ok", Body: c},
		{Hash: ha, Lease: "ok", Body: a}, // twice in one batch
	}
	want := []blobbatch.Result{{Status: 201}, {Status: 200}, {Status: 403, Code: "permission_denied"},
		{Status: 422, Code: "hash_mismatch"}, {Status: 201}, {Status: 200}}
	payloadBytes, err := blobbatch.Encode(items)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := ts.do(t, "POST", "/v1/volumes/1/blobs", bytes.NewReader(payloadBytes))
	if resp.StatusCode != 200 {
		t.Fatalf("batch = %d %s", resp.StatusCode, body)
	}
	var got blobbatch.Response
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Results) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(got.Results), len(want), body)
	}
	// The same blob twice in one batch: one of the two stores it.
	if got.Results[5].Status == 201 && got.Results[0].Status == 200 {
		got.Results[0].Status, got.Results[5].Status = 201, 200
	}
	for i, w := range want {
		if g := got.Results[i]; g.Status != w.Status || g.Code != w.Code {
			t.Errorf("item %d: %d %q (%s), want %d %q", i, g.Status, g.Code, g.Message, w.Status, w.Code)
		}
	}
	check := func() {
		t.Helper()
		for _, x := range []struct {
			body []byte
			h    raisfs.Hash
		}{{a, ha}, {held, hh}, {c, hc}} {
			if got := ts.expect(t, "GET", blobPath(1, x.h), nil, 200, ""); !bytes.Equal(got, x.body) {
				t.Fatalf("blob %s reads back wrong", x.h)
			}
		}
		ts.expect(t, "GET", blobPath(1, hb), nil, 404, "not_found")
	}
	check()
	// The batch's needles survive a restart (index and data file agree).
	ts.store.Close()
	s2 := mustOpen(t, ts.cfg)
	ts2 := httptest.NewServer(NewServer("cs-test", s2, denyPuts{}, testLogger(t)))
	t.Cleanup(ts2.Close)
	ts.Server, ts.store = ts2, s2
	check()
}

// A batch larger than the pooled size is read as its bytes come, and
// stores the same.
func TestServer_BatchUploadLargerThanPooled(t *testing.T) {
	ts := mustServe(t, func(cfg *Config) { cfg.VolumeSize = 64 << 20 }, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	var items []blobbatch.Item
	for i := range 6 {
		b, h := payload(uint64(50+i), 1<<20)
		items = append(items, blobbatch.Item{Hash: h, Body: b})
	}
	enc, err := blobbatch.Encode(items)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) <= pooledBatchBytes {
		t.Fatalf("batch of %d bytes: want more than %d", len(enc), pooledBatchBytes)
	}
	resp, body := ts.do(t, "POST", "/v1/volumes/1/blobs", bytes.NewReader(enc))
	var got blobbatch.Response
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil || len(got.Results) != len(items) {
		t.Fatalf("batch = %d %s", resp.StatusCode, body)
	}
	for i, r := range got.Results {
		if r.Status != 201 {
			t.Fatalf("item %d: %d %s", i, r.Status, r.Message)
		}
	}
	for _, it := range items {
		if got := ts.expect(t, "GET", blobPath(1, it.Hash), nil, 200, ""); !bytes.Equal(got, it.Body) {
			t.Fatalf("blob %s reads back wrong", it.Hash)
		}
	}
}

// A malformed or torn batch is refused whole and stores nothing.
func TestServer_BatchUploadMalformed(t *testing.T) {
	ts := mustServe(t, nil, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	a, ha := payload(2, 4096)
	b, hb := payload(3, 100)
	enc, _ := blobbatch.Encode([]blobbatch.Item{{Hash: ha, Body: a}, {Hash: hb, Body: b}})
	ts.expect(t, "POST", "/v1/volumes/1/blobs", bytes.NewReader(enc[:len(enc)-1]), 400, "invalid_argument")
	ts.expect(t, "POST", "/v1/volumes/1/blobs", strings.NewReader("not a batch"), 400, "invalid_argument")
	// Without a Content-Length (chunked): the streaming decoder, same answers.
	ts.expect(t, "POST", "/v1/volumes/1/blobs", io.MultiReader(bytes.NewReader(enc[:len(enc)-1])), 400, "invalid_argument")
	ts.expect(t, "POST", "/v1/volumes/9/blobs", bytes.NewReader(enc), 200, "") // per item: not found
	ts.expect(t, "GET", blobPath(1, ha), nil, 404, "not_found")
	ts.expect(t, "GET", blobPath(1, hb), nil, 404, "not_found")
	if st := ts.store.Status(); st.Volumes[0].SizeBytes != superblockSize {
		t.Fatalf("volume is %d bytes after refused batches, want %d (nothing written)", st.Volumes[0].SizeBytes, superblockSize)
	}
	ts.expect(t, "POST", "/v1/volumes/1/blobs", io.MultiReader(bytes.NewReader(enc)), 200, "")
	if got := ts.expect(t, "GET", blobPath(1, hb), nil, 200, ""); !bytes.Equal(got, b) {
		t.Fatal("blob of a chunked batch reads back wrong")
	}
}

// An upload whose client stops sending is ended after BodyIdleTimeout with
// a clear error, and stores nothing; a slow upload that keeps sending is
// not cut short, however long it takes in all.
func TestServer_StalledUploadIsEnded(t *testing.T) {
	const idle = 300 * time.Millisecond
	ts := mustServe(t, func(cfg *Config) { cfg.BodyIdleTimeout = idle }, nil)
	ts.expect(t, "PUT", "/v1/volumes/1", nil, 204, "")
	body, h := payload(9, 4096)
	addr := strings.TrimPrefix(ts.URL, "http://")
	sendTo := func(path string, parts ...[]byte) (string, time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: cs\r\nContent-Length: %d\r\n\r\n", path, len(body))
		start := time.Now()
		for i, p := range parts {
			if i > 0 {
				time.Sleep(idle / 3) // a slow client, not a wait for a condition
			}
			c.Write(p)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return line, time.Since(start)
	}
	send := func(parts ...[]byte) (string, time.Duration) { return sendTo(blobPath(1, h), parts...) }
	// Half the body, then nothing.
	line, took := send(body[:2048])
	if !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Fatalf("stalled upload answered %q, want 400", line)
	}
	t.Logf("stalled upload ended after %s", took.Round(time.Millisecond))
	if took < idle || took > 20*idle {
		t.Fatalf("stalled upload ended after %s, want about %s", took, idle)
	}
	ts.expect(t, "GET", blobPath(1, h), nil, 404, "not_found")
	if st := ts.store.Status(); st.Volumes[0].SizeBytes != superblockSize {
		t.Fatalf("volume is %d bytes after a stalled upload, want %d (nothing written)", st.Volumes[0].SizeBytes, superblockSize)
	}
	// Eight pieces a third of the timeout apart: longer than the timeout in
	// all, never idle that long.
	var parts [][]byte
	for i := 0; i < len(body); i += len(body) / 8 {
		parts = append(parts, body[i:i+len(body)/8])
	}
	if line, took := send(parts...); !strings.HasPrefix(line, "HTTP/1.1 201") {
		t.Fatalf("slow upload (%s in all) answered %q, want 201", took, line)
	}
	if got := ts.expect(t, "GET", blobPath(1, h), nil, 200, ""); !bytes.Equal(got, body) {
		t.Fatal("slow upload reads back wrong")
	}
	// Refused before its body is read (no such volume), then stalled: the
	// server's read of the rest of the body, before it answers, is ended
	// by the idle timeout too.
	line, took = sendTo(blobPath(99, h), body[:2048])
	if !strings.HasPrefix(line, "HTTP/1.1 404") || took > 20*idle {
		t.Fatalf("upload refused before reading, then stalled: answered %q after %s, want 404 after about %s", line, took, idle)
	}
}
