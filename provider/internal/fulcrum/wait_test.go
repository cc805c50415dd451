package fulcrum

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// members reads members as the member resource does.
var members = Waiter[openapi.Member]{
	Kind: "member",
	Get: func(ctx context.Context, c *Client, id string, diags *diag.Diagnostics) (*openapi.Member, bool) {
		res, err := c.API.GetMemberWithResponse(ctx, id)
		switch {
		case err != nil:
			AddRequestError(diags, "Could not read", err)
		case res.JSON200 != nil:
			return res.JSON200, true
		case res.StatusCode() != http.StatusNotFound:
			AddProblem(diags, "Could not read", res.StatusCode(), res.Body, nil)
		}
		return nil, false
	},
	Status: func(m *openapi.Member) (openapi.ProvisioningStatus, *string) {
		return m.ProvisioningStatus, m.StatusMessage
	},
}

func serve(t *testing.T, status int, body string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, "t", "test")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWaiterActive(t *testing.T) {
	c := serve(t, http.StatusOK, `{"id":"mbr_1","weight":7,"provisioning_status":"active"}`)
	m, err := members.Active(context.Background(), c, "mbr_1")
	if err != nil || m == nil || m.Weight != 7 {
		t.Fatalf("Active = %+v, %v; want the member read", m, err)
	}
	var d diag.Diagnostics
	members.AddError(&d, "mbr_1", "active", err)
	if d.HasError() {
		t.Errorf("no error reported %v", d)
	}
}

// An object the nodes refuse fails the apply with the API's status message.
func TestWaiterActiveReportsStatusMessage(t *testing.T) {
	c := serve(t, http.StatusOK, `{"id":"mbr_1","provisioning_status":"error","status_message":"node-1: bind failed"}`)
	m, err := members.Active(context.Background(), c, "mbr_1")
	if m == nil || err == nil {
		t.Fatalf("Active = %+v, %v; want the member and an error", m, err)
	}
	var d diag.Diagnostics
	members.AddError(&d, "mbr_1", "active", err)
	if !d.HasError() || d[0].Summary() != "The member went to provisioning status error" ||
		!strings.HasPrefix(d[0].Detail(), "Member mbr_1 could not be applied by the dataplane") ||
		!strings.Contains(d[0].Detail(), "node-1: bind failed") {
		t.Errorf("diagnostics %v", d)
	}
}

func TestWaiterGone(t *testing.T) {
	c := serve(t, http.StatusNotFound, `{"type":"about:blank","title":"Not found","status":404}`)
	if err := members.Gone(context.Background(), c, "mbr_1"); err != nil {
		t.Errorf("Gone = %v", err)
	}
	c = serve(t, http.StatusInternalServerError, `{"type":"about:blank","title":"Boom","status":500}`)
	err := members.Gone(context.Background(), c, "mbr_1")
	var d diag.Diagnostics
	members.AddError(&d, "mbr_1", "gone", err)
	if !d.HasError() || d[0].Summary() != "Member did not become gone" || !strings.Contains(d[0].Detail(), "Could not read: Boom") {
		t.Errorf("diagnostics %v", d)
	}
}

func TestWaiterAddErrorNamesKind(t *testing.T) {
	var d diag.Diagnostics
	Waiter[openapi.LoadBalancer]{Kind: "load balancer"}.AddError(&d, "lb_1", "active", context.DeadlineExceeded)
	if !d.HasError() || d[0].Summary() != "Load balancer did not become active" || d[0].Detail() != "Load balancer lb_1: context deadline exceeded" {
		t.Errorf("diagnostics %v", d)
	}
}

// An object that reads error for a moment (a node's report on an older
// version) and then active is active; one that stays in error fails.
func TestWaitActiveErrorGrace(t *testing.T) {
	t.Parallel()
	polls := 0
	err := WaitActive(context.Background(), func(context.Context) (Status, error) {
		polls++
		if polls < 4 {
			return Status{Found: true, ProvisioningStatus: "error", Message: "stale"}, nil
		}
		return Status{Found: true, ProvisioningStatus: "active"}, nil
	})
	if err != nil {
		t.Errorf("error for a moment: %v, want active", err)
	}
	err = WaitActive(context.Background(), func(context.Context) (Status, error) {
		return Status{Found: true, ProvisioningStatus: "error", Message: "refused"}, nil
	})
	if !errors.Is(err, ErrObjectError) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("staying in error: %v, want ErrObjectError with the message", err)
	}
}
