package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Kind describes one table of objects: how the API names it and which quota
// (if any) bounds it.
type Kind struct {
	Table  string // SQL table
	Prefix string // id prefix
	Name   string // for messages: "load balancer"
	// Quota returns the tenant's limit for this kind, nil for unbounded kinds.
	Quota func(Quotas) int
	// Plural names the kind in quota messages.
	Plural string
	// Tenanted kinds have a tenant_id column every query filters on.
	Tenanted bool
	// SoftDelete kinds keep deleted rows (pending_delete) until nodes drop them.
	SoftDelete bool
}

// The kinds of objects.
var (
	KindTenant       = Kind{Table: "tenants", Prefix: "tnt", Name: "tenant"}
	KindToken        = Kind{Table: "tokens", Prefix: "tok", Name: "token"}
	KindNodeGroup    = Kind{Table: "node_groups", Prefix: "ng", Name: "node group"}
	KindNode         = Kind{Table: "nodes", Prefix: "node", Name: "node"}
	KindLoadBalancer = Kind{Table: "load_balancers", Prefix: "lb", Name: "load balancer", Plural: "load balancers", Tenanted: true, SoftDelete: true,
		Quota: func(q Quotas) int { return q.LoadBalancers }}
	KindListener = Kind{Table: "listeners", Prefix: "lsn", Name: "listener", Plural: "listeners", Tenanted: true, SoftDelete: true,
		Quota: func(q Quotas) int { return q.Listeners }}
	KindPool = Kind{Table: "pools", Prefix: "pool", Name: "pool", Plural: "pools", Tenanted: true, SoftDelete: true,
		Quota: func(q Quotas) int { return q.Pools }}
	KindMember = Kind{Table: "members", Prefix: "mbr", Name: "member", Plural: "members", Tenanted: true, SoftDelete: true,
		Quota: func(q Quotas) int { return q.Members }}
	KindRoutingRule = Kind{Table: "routing_rules", Prefix: "rule", Name: "routing rule", Plural: "routing rules", Tenanted: true, SoftDelete: true,
		Quota: func(q Quotas) int { return q.RoutingRules }}
	KindCertificate = Kind{Table: "certificates", Prefix: "cert", Name: "certificate", Plural: "certificates", Tenanted: true,
		Quota: func(q Quotas) int { return q.Certificates }}
)

// Column is one column written by an insert or update.
type Column struct {
	Name  string
	Value any
}

// Get reads one object by id. For tenanted kinds tenantID must match, so another
// tenant's object is ErrNotFound, exactly like a missing one.
func Get[T any](ctx context.Context, tx *Tx, k Kind, tenantID, id string, forUpdate bool) (*T, error) {
	q := "SELECT * FROM " + k.Table + " WHERE id = $1"
	args := []any{id}
	if k.Tenanted {
		q += " AND tenant_id = $2"
		args = append(args, tenantID)
	}
	if forUpdate {
		q += " FOR UPDATE"
	}
	rows, _ := tx.pg.Query(ctx, q, args...)
	v, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[T])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(k, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", k.Name, err)
	}
	return v, nil
}

// GetLive is Get for objects that are not being deleted: a pending_delete object
// cannot be changed or referred to.
func GetLive[T any](ctx context.Context, tx *Tx, k Kind, tenantID, id string, forUpdate bool) (*T, error) {
	v, err := Get[T](ctx, tx, k, tenantID, id, forUpdate)
	if err != nil {
		return nil, err
	}
	if k.SoftDelete {
		var deleted bool
		if st, ok := any(v).(interface{ deleted() bool }); ok {
			deleted = st.deleted() // the row read has it: no second query
		} else if err := tx.pg.QueryRow(ctx, "SELECT deleted_revision IS NOT NULL FROM "+k.Table+" WHERE id = $1", id).Scan(&deleted); err != nil {
			return nil, fmt.Errorf("get %s: %w", k.Name, err)
		}
		if deleted {
			return nil, conflict(ReasonPendingDelete, fmt.Sprintf("%s %q is being deleted.", k.Name, id))
		}
	}
	return v, nil
}

// GetLiveParent is GetLive for the parent of an object being created, which
// needs only that it exists, is the tenant's and is not being deleted: it
// reads the parent's load balancer id (its own id for a load balancer) and
// nothing else, so the create does not decode a row it throws away. Errors
// are GetLive's. forUpdate locks the row as GetLive does.
func GetLiveParent(ctx context.Context, tx *Tx, k Kind, tenantID, id string, forUpdate bool) (loadBalancerID string, err error) {
	col := "load_balancer_id"
	if k.Table == KindLoadBalancer.Table {
		col = "id"
	}
	if !k.Tenanted || !k.SoftDelete {
		return "", fmt.Errorf("get %s: not the parent of a tenant's object", k.Name)
	}
	q := "SELECT " + col + ", deleted_revision IS NOT NULL FROM " + k.Table + " WHERE id = $1 AND tenant_id = $2"
	if forUpdate {
		q += " FOR UPDATE"
	}
	var deleted bool
	err = tx.pg.QueryRow(ctx, q, id, tenantID).Scan(&loadBalancerID, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", notFound(k, id)
	}
	if err != nil {
		return "", fmt.Errorf("get %s: %w", k.Name, err)
	}
	if deleted {
		return "", conflict(ReasonPendingDelete, fmt.Sprintf("%s %q is being deleted.", k.Name, id))
	}
	return loadBalancerID, nil
}

// Insert writes a new row and returns it as stored.
func Insert[T any](ctx context.Context, tx *Tx, k Kind, cols []Column) (*T, error) {
	// The same text as fmt would build, without a Sprintf per column.
	var q strings.Builder
	q.Grow(64 + 24*len(cols))
	q.WriteString("INSERT INTO ")
	q.WriteString(k.Table)
	q.WriteString(" (")
	args := make([]any, len(cols))
	for i, c := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(c.Name)
		args[i] = c.Value
	}
	q.WriteString(") VALUES (")
	for i := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('$')
		q.WriteString(strconv.Itoa(i + 1))
	}
	q.WriteString(") RETURNING *")
	rows, _ := tx.pg.Query(ctx, q.String(), args...)
	v, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[T])
	if err != nil {
		return nil, fmt.Errorf("insert %s: %w", k.Name, mapError(err))
	}
	return v, nil
}

// Update rewrites the given columns of one row, bumps its version and returns
// it. For tenanted kinds the row must be tenantID's (ErrNotFound otherwise);
// other kinds take "".
func Update[T any](ctx context.Context, tx *Tx, k Kind, tenantID, id string, cols []Column) (*T, error) {
	sets := make([]string, 0, len(cols)+2)
	args := make([]any, 0, len(cols)+2)
	for _, c := range cols {
		args = append(args, c.Value)
		sets = append(sets, fmt.Sprintf("%s = $%d", c.Name, len(args)))
	}
	sets = append(sets, "version = version + 1", "updated_at = now()")
	args = append(args, id)
	q := fmt.Sprintf("UPDATE %s SET %s WHERE id = $%d", k.Table, strings.Join(sets, ", "), len(args))
	if k.Tenanted {
		args = append(args, tenantID)
		q += fmt.Sprintf(" AND tenant_id = $%d", len(args))
	}
	rows, _ := tx.pg.Query(ctx, q+" RETURNING *", args...)
	v, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[T])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(k, id)
	}
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", k.Name, mapError(err))
	}
	return v, nil
}

// CheckQuota locks the tenant row (serializing the tenant's creates) and fails
// with a QuotaError when one more object of kind k would overrun the quota.
// It runs in the inserting transaction, so parallel creates, in any node
// groups, cannot overrun it. It runs after WriteIn's group locks, so locks
// are always taken in one order: write lock, node groups, tenant.
func CheckQuota(ctx context.Context, tx *Tx, k Kind, tenantID string) error {
	// One round trip (migrations/011_group_write_order.sql): lock the
	// tenant's row, then count in a statement of its own.
	var key *string
	if k.Quota != nil {
		key = &k.Table // Quotas' JSON keys are the tables' names
	}
	var found bool
	var limit *int
	var n *int64
	err := tx.pg.QueryRow(ctx, "SELECT tenant_found, lim, used FROM fulcrum_quota_use($1, $2, $3, $4)", tenantID, k.Table, key, k.SoftDelete).Scan(&found, &limit, &n)
	if err != nil {
		return fmt.Errorf("check %s quota: %w", k.Name, err)
	}
	if !found {
		return notFound(KindTenant, tenantID)
	}
	if limit == nil || n == nil {
		return nil
	}
	if *n >= int64(*limit) {
		return &QuotaError{Plural: k.Plural, Limit: *limit}
	}
	return nil
}

// ListQuery selects a page of objects.
type ListQuery struct {
	Limit     int
	PageToken string
	Name      *string
	// Labels are `key=value` or `key` filters, all required.
	Labels []string
	// Equal filters column = value; column names come from code, never users.
	Equal []Column
}

// List returns one page, ordered by id (which sorts by creation time), and the
// token of the next page ("" on the last).
func List[T any](ctx context.Context, tx *Tx, k Kind, tenantID string, lq ListQuery) ([]*T, string, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if k.Tenanted {
		add("tenant_id = $%d", tenantID)
	}
	if lq.PageToken != "" {
		after, err := base64.RawURLEncoding.DecodeString(lq.PageToken)
		if err != nil || !isCursor(string(after), k.Prefix) {
			return nil, "", &InputError{Field: "page_token", Message: "is not a page token this API issued"}
		}
		add("id > $%d", string(after))
	}
	if lq.Name != nil {
		add("name = $%d", *lq.Name)
	}
	for _, l := range lq.Labels {
		key, value, hasValue := strings.Cut(l, "=")
		if key == "" {
			return nil, "", &InputError{Field: "label", Message: "must be key=value or key"}
		}
		if hasValue {
			add("labels @> $%d", map[string]string{key: value})
		} else {
			add("labels ? $%d", key)
		}
	}
	for _, c := range lq.Equal {
		add(c.Name+" = $%d", c.Value)
	}
	limit := lq.Limit
	if limit <= 0 {
		limit = openapi.ParamLimitDefault
	}
	q := "SELECT * FROM " + k.Table
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY id LIMIT %d", limit+1)
	rows, _ := tx.pg.Query(ctx, q, args...)
	items, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByNameLax[T])
	if err != nil {
		return nil, "", fmt.Errorf("list %s: %w", k.Table, err)
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(idOf(items[len(items)-1])))
	}
	return items, next, nil
}

// isCursor says whether a decoded page token is an id of kind prefix, as
// List issues them: anything else (NUL bytes, invalid UTF-8) must not reach
// the query.
func isCursor(s, prefix string) bool {
	if len(s) > 64 || !strings.HasPrefix(s, prefix+"_") || len(s) == len(prefix)+1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// idOf reads the ID of any model through the interface every model satisfies.
func idOf(v any) string {
	if x, ok := v.(interface{ GetID() string }); ok {
		return x.GetID()
	}
	panic(fmt.Sprintf("store: %T has no GetID", v))
}

// GetID returns the object's id.
func (m *Meta) GetID() string      { return m.ID }
func (t *Tenant) GetID() string    { return t.ID }
func (t *Token) GetID() string     { return t.ID }
func (g *NodeGroup) GetID() string { return g.ID }
func (n *Node) GetID() string      { return n.ID }
