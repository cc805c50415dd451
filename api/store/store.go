// Package store is Fulcrum's Postgres store: the only state of the control plane.
//
// Rules:
//   - Every SQL statement of the control plane lives here, in functions named
//     noun-then-verb (NodeGetByName, LoadBalancerListByGroup); no other package
//     runs SQL (sqlboundary_test.go enforces it).
//   - The store opens every transaction (Read, Write, ReadSnapshot) and never
//     exposes pgx: Tx and Store keep their pgx handles unexported.
//   - Every query and write on a tenant's objects takes the tenant id and
//     filters on it in SQL (kinds that are not tenanted take ""), so tenancy is
//     enforced here and nowhere else.
//   - The store never speaks HTTP: it returns its own errors (errors.go:
//     ErrNotFound, ErrConflict, ErrInvalidInput, ErrIdempotencyKeyReused,
//     ErrUnavailable, with the field-naming NotFoundError, ConflictError,
//     QuotaError, InputError), which the API maps to problem+json in its one
//     error writer. Only pgx.ErrNoRows becomes ErrNotFound: a failed query is
//     never "not found".
//
// It may import migrations and openapi (for the document's limits and defaults,
// limits.gen.go) and nothing else of Fulcrum's.
package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/migrations"
)

// NotifyChannel is the LISTEN/NOTIFY channel on which writes notify the node
// groups whose snapshots they changed: the payload is '<revision> <node group
// id>', never data. Triggers send it (migrations/007_group_notify.sql), so
// every write that changes a group's snapshot notifies it.
const NotifyChannel = "fulcrum_revision"

// migrateLockID guards migrations so several API replicas can start at once.
const migrateLockID = 7240117001

// writeLockID is the write lock. Writes are ordered per node group (see
// WriteScope and migrations/011_group_write_order.sql): a write scoped to
// node groups takes it shared and then each group's lock (groupLockClass), so
// writes to different groups run in parallel while those to one group commit
// in the order they took their revisions; a write of ScopeAll (and the purge
// janitor) takes it exclusive, alone. Either way, a node that has seen
// revision N of its group can never later miss a write to its group with a
// revision below N.
const writeLockID = 7240117002

// groupLockClass is the first key of the per-group write locks (the second is
// hashtext of the group id); fulcrum_lock_groups takes them.
const groupLockClass = 0x66756777 // "fugw"

// LiveNodeWindow is how recently a node must have reported to count for status
// and delete progress; a node silent for longer does not hold anything back.
const LiveNodeWindow = "5 minutes"

// Store wraps the pool. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// snap is ReadSnapshot's pool (snapshot_pool.go); nil: pool.
	snap *pgxpool.Pool
	// queries counts the statements sent (querycount.go).
	queries *queryCounter
}

// Options bound how long the database may take. Zero fields take the defaults.
type Options struct {
	// StatementTimeout is the Postgres statement_timeout of every pooled
	// connection: a statement running longer is cancelled by the server.
	// Defaults to 5s; a statement_timeout in the URL wins.
	StatementTimeout time.Duration
	// LockTimeout is the Postgres lock_timeout of every pooled connection:
	// waiting longer for a lock (the write lock included) fails the
	// statement. Defaults to 3s; a lock_timeout in the URL wins.
	LockTimeout time.Duration
	// ConnectTimeout bounds opening one connection, a frozen server included.
	// Defaults to 5s; a connect_timeout in the URL wins.
	ConnectTimeout time.Duration
	// StatementLog, when set, is called with every statement as it starts,
	// its connection (to tell transactions apart) and its arguments: the
	// writes benchmark (internal/writebench) replays them with pgbench.
	StatementLog func(conn any, sql string, args []any)
}

// statementLog is a pgx tracer calling Options.StatementLog.
type statementLog func(conn any, sql string, args []any)

func (l statementLog) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l(conn, d.SQL, d.Args)
	return ctx
}

func (statementLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Statements sent together (a pgx batch: one round trip) are logged with
// "-- pipeline" before the first and "-- end pipeline" after the last.
func (l statementLog) TraceBatchStart(ctx context.Context, conn *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	l(conn, "-- pipeline", nil)
	return ctx
}

func (l statementLog) TraceBatchQuery(_ context.Context, conn *pgx.Conn, d pgx.TraceBatchQueryData) {
	l(conn, d.SQL, d.Args)
}

func (l statementLog) TraceBatchEnd(_ context.Context, conn *pgx.Conn, _ pgx.TraceBatchEndData) {
	l(conn, "-- end pipeline", nil)
}

// Defaults for Options.
const (
	StatementTimeoutDefault = 5 * time.Second
	LockTimeoutDefault      = 3 * time.Second
	ConnectTimeoutDefault   = 5 * time.Second
)

func (o *Options) setDefaults() {
	if o.StatementTimeout == 0 {
		o.StatementTimeout = StatementTimeoutDefault
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = LockTimeoutDefault
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = ConnectTimeoutDefault
	}
}

// Open connects to url with OpenTelemetry tracing of every query and the
// default Options.
func Open(ctx context.Context, url string) (*Store, error) {
	return OpenWith(ctx, url, Options{})
}

// OpenWith connects to url with OpenTelemetry tracing of every query and the
// timeouts of opts.
func OpenWith(ctx context.Context, url string, opts Options) (*Store, error) {
	opts.setDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	queries := &queryCounter{}
	tracers := []pgx.QueryTracer{otelpgx.NewTracer(otelpgx.WithTrimSQLInSpanName()), queries}
	if opts.StatementLog != nil {
		tracers = append(tracers, statementLog(opts.StatementLog))
	}
	cfg.ConnConfig.Tracer = multitracer.New(tracers...)
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	params := cfg.ConnConfig.RuntimeParams
	if _, ok := params["statement_timeout"]; !ok {
		params["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	}
	if _, ok := params["lock_timeout"]; !ok {
		params["lock_timeout"] = strconv.FormatInt(opts.LockTimeout.Milliseconds(), 10)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	snap, err := pgxpool.NewWithConfig(ctx, snapshotPoolConfig(cfg))
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return &Store{pool: pool, snap: snap, queries: queries}, nil
}

// Close closes the pools.
func (s *Store) Close() {
	if s.snap != nil {
		s.snap.Close()
	}
	s.pool.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Migrate applies every pending migration under a Postgres advisory lock, so
// concurrent callers apply each migration once.
func (s *Store) Migrate(ctx context.Context) (int32, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	// Migrations may run long, and wait long for another replica's: no
	// statement or lock timeout here. RESET restores the pool's values.
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0; SET lock_timeout = 0"); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "RESET statement_timeout; RESET lock_timeout") //nolint:errcheck
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockID)); err != nil {
		return 0, fmt.Errorf("migrate: take lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLockID)) //nolint:errcheck
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "schema_version")
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return 0, fmt.Errorf("migrate: load: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	v, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	s.rewarmSnapshots() // snapshot_pool.go: their statements may predate the schema
	return v, nil
}

// pgTx is what a Tx runs its statements on: a pgx.Tx, or the pooled
// connection of a WriteIn, which begins its transaction itself.
type pgTx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Conn() *pgx.Conn
}

// Tx is a transaction with the helpers every write needs.
type Tx struct {
	pg  pgTx
	rev int64
	// groups are the node groups a scoped write locked (sorted); nil when
	// the write holds the exclusive write lock (or is not a Write).
	groups []string
	// unordered marks a transaction without the write lock (WriteReport):
	// it may not take a revision.
	unordered bool
}

// ErrUnavailable marks errors of a transaction whose connection to the
// database was lost: whatever the handler concluded, the database did not
// answer. Unavailable reports it.
var ErrUnavailable = errors.New("database unavailable")

// lost replaces err by ErrUnavailable when t's connection is gone: a "does
// not exist" drawn from a failed query must not reach the client as a 4xx.
func lost(t interface{ Conn() *pgx.Conn }, err error) error {
	if err != nil && t.Conn().IsClosed() {
		return fmt.Errorf("%w: the connection was lost (%v)", ErrUnavailable, err)
	}
	return err
}

// Read runs fn in a read-only transaction.
func (s *Store) Read(ctx context.Context, fn func(tx *Tx) error) error {
	t, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer rollback(ctx, t)
	if err := fn(&Tx{pg: t}); err != nil {
		return lost(t, err)
	}
	if err := t.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// ReadSnapshot runs fn in a read-only repeatable-read transaction: every
// query of fn sees the database as of its first one.
//
// It runs on the store's snapshot connections (snapshot_pool.go), whose
// statements are prepared and planned when they open; a transaction that
// fails because its connection was lost runs once more on another, and one
// that read everything ends off the caller's path.
func (s *Store) ReadSnapshot(ctx context.Context, fn func(tx *Tx) error) error {
	pool := s.snap
	if pool == nil {
		pool = s.pool
	}
	closed, begin, err := readSnapshotOnce(ctx, pool, fn, true)
	if retryRead(err, closed, begin) && ctx.Err() == nil {
		// Begun before fn runs, as every read was before session 8: fn
		// runs again only on a connection that took the BEGIN.
		closed, _, err = readSnapshotOnce(ctx, pool, fn, false)
	}
	if err != nil && closed {
		return fmt.Errorf("%w: the connection was lost (%v)", ErrUnavailable, err)
	}
	return err
}

// readSnapshotOnce is one try of ReadSnapshot on pool; closed says its
// connection was lost, begin that its BEGIN failed. With lazy the BEGIN
// goes with fn's first statement (snapshot_begin.go), else before fn runs.
func readSnapshotOnce(ctx context.Context, pool *pgxpool.Pool, fn func(tx *Tx) error, lazy bool) (closed, begin bool, err error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return false, true, fmt.Errorf("begin: %w", err)
	}
	l := &lazyTx{c: c.Conn(), pending: true}
	if !lazy {
		if err := l.start(ctx); err != nil {
			closed := c.Conn().IsClosed()
			l.end(ctx, c)
			return closed, true, err
		}
	}
	if err := fn(&Tx{pg: l}); err != nil {
		closed := c.Conn().IsClosed()
		l.end(ctx, c)
		return closed, l.beginErr, err
	}
	// Everything is read, and a read-only transaction's end changes
	// nothing of it: it ends off the caller's path (one round trip less
	// between a write's notification and the snapshot it makes).
	go l.end(ctx, c)
	return false, false, nil
}

// Write runs fn in a read-write transaction under the exclusive write lock
// (ScopeAll), committed when fn succeeds unless dryRun, in which case it is
// rolled back after fn has validated everything. Writes that change one node
// group's objects use WriteIn with the group's scope instead.
func (s *Store) Write(ctx context.Context, dryRun bool, fn func(tx *Tx) error) error {
	return s.WriteIn(ctx, dryRun, ScopeAll(), fn)
}

// WriteIn is Write ordered within scope only: before fn runs it takes the
// write lock shared and the lock of every node group of scope (or the write
// lock exclusive for ScopeAll), so fn validates and writes with no
// concurrent write to those groups, and its revision commits after every
// earlier revision of them. fn may change only the rows of those groups: the
// database refuses others (a ConflictError, "retry").
func (s *Store) WriteIn(ctx context.Context, dryRun bool, scope WriteScope, fn func(tx *Tx) error) error {
	// The transaction begins and takes its locks in one round trip (a
	// pipeline of BEGIN and the lock statement), on a connection of its own:
	// the pool destroys it on release unless it is idle, outside any
	// transaction, again.
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer c.Release()
	committed := false
	defer func() {
		if !committed {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
			defer cancel()
			_, _ = c.Exec(rctx, "rollback")
		}
	}()
	tx := &Tx{pg: c}
	if err := scope.lock(ctx, c, tx); err != nil {
		return lost(c, mapError(err))
	}
	if err := fn(tx); err != nil {
		return lost(c, mapError(err))
	}
	if dryRun {
		return nil
	}
	tag, err := c.Exec(ctx, "commit")
	if err != nil {
		return mapError(fmt.Errorf("commit: %w", err))
	}
	committed = true
	if tag.String() != "COMMIT" { // the transaction had failed: Postgres rolled it back
		return fmt.Errorf("commit: %w", pgx.ErrTxCommitRollback)
	}
	return nil
}

// WriteScope names the node groups a write changes, for WriteIn.
type WriteScope struct {
	all    bool
	groups []string // explicit group ids
	query  string   // or a query of the groups, on args
	args   []any
}

// ScopeAll is every node group: the write lock exclusive. It is for writes
// whose groups cannot be known before they run or that span groups: node
// groups, nodes, certificates (a rotation reaches every group using them),
// tenants, tokens.
func ScopeAll() WriteScope { return WriteScope{all: true} }

// ScopeGroups is the node groups ids (none: a write that changes no group's
// snapshot, e.g. creating a certificate).
func ScopeGroups(ids ...string) WriteScope { return WriteScope{groups: ids} }

// ScopeGroupNamed is the node group named name (none if there is none).
func ScopeGroupNamed(name string) WriteScope {
	return WriteScope{query: "SELECT id FROM node_groups WHERE name = $1", args: []any{name}}
}

// ScopeOf is the node group of object id of kind k, tenantID's: a load
// balancer's group, or that of the load balancer a listener, pool, member or
// routing rule belongs to (none when there is no such object: fn then finds
// none either). Other kinds are ScopeAll. An object never changes groups.
func ScopeOf(k Kind, tenantID, id string) WriteScope {
	switch k.Table {
	case KindLoadBalancer.Table:
		return WriteScope{query: "SELECT node_group_id FROM load_balancers WHERE id = $1 AND tenant_id = $2", args: []any{id, tenantID}}
	case KindListener.Table, KindPool.Table, KindMember.Table, KindRoutingRule.Table:
		return WriteScope{query: "SELECT lb.node_group_id FROM " + k.Table + " t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.id = $1 AND t.tenant_id = $2",
			args: []any{id, tenantID}}
	}
	return ScopeAll()
}

// lock begins the transaction on c and takes the scope's locks, in one
// round trip, and records the scope's groups in tx.
func (sc WriteScope) lock(ctx context.Context, c *pgxpool.Conn, tx *Tx) error {
	b := &pgx.Batch{}
	b.Queue("begin")
	switch {
	case sc.all:
		b.Queue("SELECT pg_advisory_xact_lock($1), set_config('fulcrum.write_groups', '*', true)", int64(writeLockID))
	case sc.query != "":
		b.Queue("SELECT fulcrum_lock_groups(ARRAY("+sc.query+"))", sc.args...)
	default:
		b.Queue("SELECT fulcrum_lock_groups($1::text[])", sc.groups)
	}
	br := c.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return fmt.Errorf("begin: %w", err)
	}
	var err error
	if sc.all {
		_, err = br.Exec()
	} else {
		err = br.QueryRow().Scan(&tx.groups)
		if tx.groups == nil {
			tx.groups = []string{}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("take write locks: %w", err)
	}
	return nil
}

// WriteGroups are the node groups the write locked, nil when it holds the
// exclusive write lock (every group).
func (tx *Tx) WriteGroups() []string { return tx.groups }

// rollbackTimeout bounds the rollback of a failed write, which runs even
// when the request's context has ended.
const rollbackTimeout = 5 * time.Second

func rollback(ctx context.Context, t pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = t.Rollback(ctx)
}

// Revision takes the transaction's revision from the global sequence (once per
// transaction). The rows the write changes notify their node groups' listeners
// with it on commit (NotifyChannel).
func (tx *Tx) Revision(ctx context.Context) (int64, error) {
	if tx.rev != 0 {
		return tx.rev, nil
	}
	if tx.unordered {
		return 0, errors.New("next revision: a transaction without the write lock takes no revision")
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	// One round trip takes the revision and records its trace context.
	if err := tx.pg.QueryRow(ctx, "INSERT INTO revisions (revision, traceparent) VALUES (nextval('revision_seq'), $1) RETURNING revision",
		carrier.Get("traceparent")).Scan(&tx.rev); err != nil {
		return 0, fmt.Errorf("next revision: %w", err)
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.Int64("fulcrum.revision", tx.rev))
	return tx.rev, nil
}

// CurrentRevision is the newest revision any write has taken.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	var rev int64
	err := s.pool.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM revision_seq").Scan(&rev)
	return rev, err
}

// NewID returns an opaque, time-sortable id with the kind's prefix, e.g. lb_01j….
func NewID(prefix string) string {
	return prefix + "_" + strings.ToLower(ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String())
}

// uniqueFields names the field (and says why) for each unique index, so a
// violation becomes a 409 naming what collided.
var uniqueFields = map[string][2]string{
	"tenants_name_key":               {"name", "is already used by another tenant"},
	"node_groups_name_key":           {"name", "is already used by another node group"},
	"nodes_name_key":                 {"name", "is already used by another node"},
	"load_balancers_name_key":        {"name", "is already used by another load balancer of this tenant"},
	"load_balancers_vip_address_key": {"vip_address", "is already used by another load balancer"},
	"pools_name_key":                 {"name", "is already used by another pool of this load balancer"},
	"listeners_port_key":             {"port", "is already used by another listener of this load balancer"},
	"listeners_name_key":             {"name", "is already used by another listener of this load balancer"},
	"members_address_port_key":       {"address", "and port are already used by another member of this pool"},
	"members_name_key":               {"name", "is already used by another member of this pool"},
	"routing_rules_priority_key":     {"priority", "is already used by another rule of this listener"},
	"routing_rules_name_key":         {"name", "is already used by another rule of this listener"},
	"certificates_name_key":          {"name", "is already used by another certificate of this tenant"},
}

// mapError turns Postgres errors the API can explain into store errors.
func mapError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "23505": // unique_violation
		if f, ok := uniqueFields[pgErr.ConstraintName]; ok {
			return conflict(ReasonConflict, fmt.Sprintf("%s %s.", f[0], f[1]), FieldError{Field: f[0], Message: f[1]})
		}
		return conflict(ReasonConflict, "The object collides with an existing one.")
	case "23503": // foreign_key_violation: a reference vanished concurrently
		return conflict(ReasonConflict, "An object this one refers to, or that refers to it, changed concurrently; retry.")
	case "40001", "40P01": // serialization failure, deadlock
		return conflict(ReasonConflict, "A concurrent change collided with this one; retry.")
	case "FL001": // a write changed a node group it did not lock (011_group_write_order.sql)
		return conflict(ReasonConflict, "The object moved to another node group concurrently; retry.")
	}
	return err
}
