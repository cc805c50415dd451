package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
)

const adminUsage = `Usage: fulcrum admin <object> <verb> [flags]

  tenant create --name NAME [--description D] [--max-load-balancers N ...]
  tenant list
  token create --kind admin|tenant|node [--tenant ID-or-NAME] [--node-group ID-or-NAME] [--name N] [--expires-in 720h]
  token list
  token revoke TOKEN_ID
  node-group create --name NAME --vip-range CIDR [--description D]
  node-group list

Every command talks to the database directly (--database-url or
FULCRUM_DATABASE_URL), so the first admin token can be issued before any token
exists. 'create' prints the new id (for tokens: the bearer token, shown once) on
stdout. 'fulcrum admin <object> <verb> -h' describes one command and its flags.
`

// adminHelp describes each admin command for its -h.
var adminHelp = map[string][2]string{
	"tenant create": {"fulcrum admin tenant create --name NAME [flags]",
		"Creates a tenant and prints its id. Quotas left out take the defaults shown.\n"},
	"tenant list": {"fulcrum admin tenant list [flags]", "Lists the tenants: id, name and load balancer quota.\n"},
	"token create": {"fulcrum admin token create --kind admin|tenant|node [flags]", `Issues a token and prints the bearer token (<token id>.<secret>), shown once;
only its hash is stored.
  admin   tenants, tokens, node groups and nodes through the API
  tenant  one tenant's load balancers, their objects and certificates: needs --tenant
  node    for dataplane agents: bound to one node group with --node-group, or,
          without it, valid for any group (each agent then names its group with
          its --node-group / FULCRUM_NODE_GROUP). Issue one per group, or one
          per node so that a node can be revoked alone.
`},
	"token list":   {"fulcrum admin token list [flags]", "Lists the tokens (never their secrets): id, kind, tenant, name, last use.\n"},
	"token revoke": {"fulcrum admin token revoke [flags] TOKEN_ID", "Revokes a token at once: requests with it get 401 from then on.\n"},
	"node-group create": {"fulcrum admin node-group create --name NAME --vip-range CIDR [flags]",
		`Creates a node group and prints its id. Load balancers get their VIPs from its
VIP range. A load balancer created without node_group_id lands in the group
named "default"; without such a group that create is refused (422 naming
node_group_id).
`},
	"node-group list": {"fulcrum admin node-group list [flags]", "Lists the node groups: id, name, VIP range.\n"},
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) || len(args) > 1 && isHelp(args[1]) {
		fmt.Fprint(stderr, adminUsage)
		return flag.ErrHelp
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, adminUsage)
		return errors.New("missing object and verb")
	}
	object, verb, rest := args[0], args[1], args[2:]
	fs := flag.NewFlagSet("admin "+object+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if h, ok := adminHelp[object+" "+verb]; ok {
		setUsage(fs, h[0], h[1])
	} else {
		fs.Usage = func() { fmt.Fprint(stderr, adminUsage); fs.PrintDefaults() }
	}
	dbURL := dbFlag(fs)
	var run func(st *store.Store) error
	switch object + " " + verb {
	case "tenant create":
		name := fs.String("name", "", "tenant name (required)")
		desc := fs.String("description", "", "description")
		q := store.DefaultQuotas
		fs.IntVar(&q.LoadBalancers, "max-load-balancers", q.LoadBalancers, "quota: most load balancers")
		fs.IntVar(&q.Listeners, "max-listeners", q.Listeners, "quota: most listeners")
		fs.IntVar(&q.Pools, "max-pools", q.Pools, "quota: most pools")
		fs.IntVar(&q.Members, "max-members", q.Members, "quota: most members")
		fs.IntVar(&q.RoutingRules, "max-routing-rules", q.RoutingRules, "quota: most routing rules")
		fs.IntVar(&q.Certificates, "max-certificates", q.Certificates, "quota: most certificates")
		run = func(st *store.Store) error {
			return st.Write(ctx, false, func(tx *store.Tx) error {
				t, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: *name, Description: *desc, Quotas: q})
				if err != nil {
					return err
				}
				fmt.Fprintln(stdout, t.ID)
				return nil
			})
		}
	case "tenant list":
		run = func(st *store.Store) error {
			return listAll[store.Tenant](ctx, st, store.KindTenant, stdout, "ID\tNAME\tLOAD BALANCERS QUOTA", func(t *store.Tenant) string {
				return fmt.Sprintf("%s\t%s\t%d", t.ID, t.Name, t.Quotas.LoadBalancers)
			})
		}
	case "token create":
		kind := fs.String("kind", "", "admin, tenant or node (required)")
		tenant := fs.String("tenant", "", "tenant id or name (tenant tokens)")
		group := fs.String("node-group", "", "node group id or name (node tokens; optional; without it the token serves any group)")
		node := fs.String("node", "", "node name (node tokens; optional): the token registers, polls and reports for this node only")
		name := fs.String("name", "", "a name to recognise the token by")
		expiresIn := fs.Duration("expires-in", 0, "lifetime, e.g. 720h (default: no expiry)")
		run = func(st *store.Store) error {
			return st.Write(ctx, false, func(tx *store.Tx) error {
				tenantID, err := resolve(ctx, tx, store.KindTenant, *tenant)
				if err != nil {
					return err
				}
				groupID, err := resolve(ctx, tx, store.KindNodeGroup, *group)
				if err != nil {
					return err
				}
				var exp *time.Time
				if *expiresIn > 0 {
					t := time.Now().Add(*expiresIn)
					exp = &t
				}
				var bearer string
				if *node != "" {
					if *kind != store.TokenNode {
						return errors.New("--node is only for node tokens")
					}
					_, bearer, err = api.IssueNodeToken(ctx, tx, groupID, *node, *name, "", exp)
				} else {
					_, bearer, err = api.IssueToken(ctx, tx, *kind, tenantID, groupID, *name, "", exp)
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(stdout, bearer)
				return nil
			})
		}
	case "token list":
		run = func(st *store.Store) error {
			return listAll[store.Token](ctx, st, store.KindToken, stdout, "ID\tKIND\tTENANT\tNAME\tLAST USED", func(t *store.Token) string {
				last := "never"
				if t.LastUsedAt != nil {
					last = t.LastUsedAt.Format(time.RFC3339)
				}
				tenant := "-"
				if t.TenantID != nil {
					tenant = *t.TenantID
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", t.ID, t.Kind, tenant, t.Name, last)
			})
		}
	case "token revoke":
		run = func(st *store.Store) error {
			if fs.NArg() != 1 {
				return errors.New("usage: fulcrum admin token revoke TOKEN_ID")
			}
			return st.Write(ctx, false, func(tx *store.Tx) error {
				if _, err := store.Get[store.Token](ctx, tx, store.KindToken, "", fs.Arg(0), true); err != nil {
					return err
				}
				if err := store.HardDelete(ctx, tx, store.KindToken, "", fs.Arg(0)); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "revoked %s\n", fs.Arg(0))
				return nil
			})
		}
	case "node-group create":
		name := fs.String("name", "", "node group name (required)")
		vipRange := fs.String("vip-range", "", "CIDR the VIPs are allocated from, e.g. 127.77.0.0/16 (required)")
		desc := fs.String("description", "", "description")
		run = func(st *store.Store) error {
			return st.Write(ctx, false, func(tx *store.Tx) error {
				g, err := api.CreateNodeGroupTx(ctx, tx, *name, *desc, nil, *vipRange)
				if err != nil {
					return err
				}
				fmt.Fprintln(stdout, g.ID)
				return nil
			})
		}
	case "node-group list":
		run = func(st *store.Store) error {
			return listAll[store.NodeGroup](ctx, st, store.KindNodeGroup, stdout, "ID\tNAME\tVIP RANGE", func(g *store.NodeGroup) string {
				return fmt.Sprintf("%s\t%s\t%s", g.ID, g.Name, g.VIPRange)
			})
		}
	default:
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("unknown admin command %q", object+" "+verb)
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	st, err := openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := run(st); err != nil {
		return explain(err)
	}
	return nil
}

// explain renders a problem's field errors for a terminal.
func explain(err error) error {
	p := api.ProblemFor(err)
	if p.Status >= 500 {
		return err
	}
	var b strings.Builder
	b.WriteString(p.Title)
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	for _, f := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Message)
	}
	return errors.New(b.String())
}

// resolve accepts an id or a unique name.
func resolve(ctx context.Context, tx *store.Tx, k store.Kind, idOrName string) (string, error) {
	if idOrName == "" {
		return "", nil
	}
	id, err := store.IDGetByName(ctx, tx, k, idOrName)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%s %q not found", strings.ReplaceAll(k.Name, " ", "_"), idOrName)
	}
	return id, err
}

func listAll[T any](ctx context.Context, st *store.Store, k store.Kind, w io.Writer, header string, row func(*T) string) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	token := ""
	for {
		var items []*T
		var next string
		err := st.Read(ctx, func(tx *store.Tx) error {
			var err error
			items, next, err = store.List[T](ctx, tx, k, "", store.ListQuery{Limit: 200, PageToken: token})
			return err
		})
		if err != nil {
			return err
		}
		for _, it := range items {
			fmt.Fprintln(tw, row(it))
		}
		if next == "" {
			break
		}
		token = next
	}
	return tw.Flush()
}
