package api_test

import (
	"net/http"
	"testing"
)

func TestSmokeTree(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	got := b.must(http.StatusOK, b.TokenA, "GET", "/v1/listeners/"+tr.HTTPSListener, nil)
	if got["protocol"] != "https" {
		t.Fatalf("got %v", got)
	}
}
