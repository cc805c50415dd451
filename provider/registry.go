package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/fulcrumlb/fulcrum/provider/internal/certificate"
	"github.com/fulcrumlb/fulcrum/provider/internal/listener"
	"github.com/fulcrumlb/fulcrum/provider/internal/loadbalancer"
	"github.com/fulcrumlb/fulcrum/provider/internal/member"
	"github.com/fulcrumlb/fulcrum/provider/internal/nodegroup"
	"github.com/fulcrumlb/fulcrum/provider/internal/pool"
	"github.com/fulcrumlb/fulcrum/provider/internal/routingrule"
	"github.com/fulcrumlb/fulcrum/provider/internal/tenant"
)

// resources and dataSources list every family's constructors.
var (
	resources = []func() resource.Resource{
		certificate.NewResource,
		routingrule.NewResource,
		tenant.NewResource,
		nodegroup.NewResource,
		loadbalancer.NewResource,
		listener.NewResource,
		pool.NewResource,
		member.NewResource,
	}
	dataSources = []func() datasource.DataSource{
		loadbalancer.NewDataSource,
		loadbalancer.NewListDataSource,
		pool.NewDataSource,
	}
)
