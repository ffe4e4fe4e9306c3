package master

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raisfs/raisfs"
)

func ctxShort(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func httpGet(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func httpPut(t testing.TB, url string, body []byte, lease string) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, bytes.NewReader(body))
	if lease != "" {
		req.Header.Set(raisfs.LeaseHeader, lease)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stripAppliedDump drops the applied-index line, which legitimately
// differs between masters that applied the same commands.
func stripAppliedDump(d string) string {
	var out []string
	for _, l := range strings.Split(d, "\n") {
		if !strings.HasPrefix(l, "6170706c6965645f696e646578=") { // hex("applied_index")
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
