package snapshot

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// The node's part encoded by hand is byte for byte what encoding/json makes
// of it, whatever its strings hold.
func TestNodePartJSON(t *testing.T) {
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	odd := "n<1>&\"\\\u00e9\u2028\x01"
	none, some := []string{}, []string{tp, odd}
	var nilSlice []string
	for i, np := range []nodePart{
		{},
		{FormatVersion: 2, Revision: 42},
		{FormatVersion: 1, Revision: 7, Traceparent: &tp, Node: &openapi.SnapshotNode{Id: "nd_1", Name: "n1", AdminState: "in_service"}},
		{FormatVersion: 2, Revision: 9, Traceparent: &odd, Node: &openapi.SnapshotNode{Id: odd, Name: odd, AdminState: "cordoned"}, Traceparents: &some},
		{Revision: -1, Traceparents: &none},
		{Revision: 1 << 62, Traceparents: &nilSlice},
	} {
		want, err := json.Marshal(np)
		if err != nil {
			t.Fatal(err)
		}
		if got := np.appendJSON(nil); string(got) != string(want) {
			t.Errorf("%d: %s\nwant %s", i, got, want)
		}
	}
}

// The node's part stored as a gzip member by hand is byte for byte what
// compress/gzip writes at NoCompression, and decodes to the part.
func TestStoredGzip(t *testing.T) {
	for _, n := range []int{0, 1, 200, 4096, maxStoredBlock} {
		p := []byte(strings.Repeat("abcdefghij", n/10+1)[:n])
		var want bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&want, gzip.NoCompression)
		_, _ = zw.Write(p)
		_ = zw.Close()
		got := appendStoredGzip(nil, p)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%d bytes: % x\nwant % x", n, got[:min(len(got), 40)], want.Bytes()[:min(want.Len(), 40)])
		}
		if len(got) != n+storedGzipOverhead && n > 0 {
			t.Fatalf("%d bytes: %d encoded, want %d", n, len(got), n+storedGzipOverhead)
		}
	}
}
