package fulcrum

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// ActiveAfterApply plans provisioning_status `active` for every change:
// apply waits for it (or fails).
func ActiveAfterApply() planmodifier.String { return activeAfterApply{} }

type activeAfterApply struct{}

func (activeAfterApply) Description(context.Context) string {
	return "Terraform waits for the object to become active."
}

func (m activeAfterApply) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

func (activeAfterApply) PlanModifyString(_ context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.PlanValue.IsUnknown() {
		resp.PlanValue = types.StringValue(string(openapi.ProvisioningStatusActive))
	}
}
