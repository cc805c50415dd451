package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// resources and dataSources list every family's constructors.
var (
	resources   = []func() resource.Resource{}
	dataSources = []func() datasource.DataSource{}
)
