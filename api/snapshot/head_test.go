package snapshot

import (
	"encoding/json"
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
