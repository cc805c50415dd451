package fulcrum

import (
	"fmt"
	"regexp"

	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// labelKeyRE is the API's label key syntax.
var labelKeyRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?$`)

// DescriptionAttribute is a resource's optional free-form `description`:
// at most 1024 characters (the document's maxLength for every object),
// empty by default.
func DescriptionAttribute() schema.StringAttribute {
	return schema.StringAttribute{
		Description: fmt.Sprintf("Free-form description; at most %d characters.", openapi.LoadBalancerDescriptionMaxLength),
		Optional:    true,
		Computed:    true,
		Default:     stringdefault.StaticString(""),
		Validators:  []validator.String{stringvalidator.LengthAtMost(openapi.LoadBalancerDescriptionMaxLength)},
	}
}

// LabelsAttribute is a resource's optional `labels`, checked as the API
// does (up to 64; keys of the API's syntax and at most 63 characters, values
// of at most 255), and empty by default.
func LabelsAttribute() schema.MapAttribute {
	return schema.MapAttribute{
		Description: "Up to 64 labels; keys `[a-z0-9]([a-z0-9._/-]*[a-z0-9])?` of at most 63 characters, values of at most 255.",
		ElementType: types.StringType,
		Optional:    true,
		Computed:    true,
		Default:     mapdefault.StaticValue(types.MapValueMust(types.StringType, map[string]attr.Value{})),
		Validators: []validator.Map{
			mapvalidator.SizeAtMost(64),
			mapvalidator.KeysAre(stringvalidator.LengthBetween(1, 63),
				stringvalidator.RegexMatches(labelKeyRE, "must be lowercase letters, digits and . _ / -, starting and ending with a letter or digit")),
			mapvalidator.ValueStringsAre(stringvalidator.LengthAtMost(255)),
		},
	}
}
