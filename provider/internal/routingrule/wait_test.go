package routingrule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// A rule the nodes refuse fails the apply with the API's status message.
func TestWaitActiveReportsStatusMessage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"rule_1","priority":1,"conditions":[],"action":{"type":"deny"},
			"provisioning_status":"error","status_message":"node-1: [ALERT] parsing regex"}`))
	}))
	defer srv.Close()
	c, err := fulcrum.NewClient(srv.URL, "t", "test")
	if err != nil {
		t.Fatal(err)
	}
	r := &Resource{client: c}
	m := model{ID: types.StringValue("rule_1")}
	var d diag.Diagnostics
	r.waitActive(context.Background(), &m, "created", &d)
	if !d.HasError() || !strings.Contains(d.Errors()[0].Detail(), "node-1: [ALERT] parsing regex") {
		t.Errorf("diagnostics %v do not carry the status message", d)
	}
}
