package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable reports whether err means the database could not serve the
// request — it is down, restarting, unreachable, frozen, overloaded, or the
// request ran out of time waiting for it — rather than that the request or
// the server is wrong. Such a request may succeed when retried later.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableCode(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), pgconn.Timeout(err):
		return true
	case errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	case errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, net.ErrClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	// pgconn reports a connection lost mid-query with messages like these,
	// not always wrapping the cause.
	msg := err.Error()
	for _, s := range []string{"conn closed", "failed to receive message", "failed to write", "unexpected EOF", "connection reset", "broken pipe", "closed pool"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// unavailableCode: SQLSTATEs of a server that cannot serve now.
func unavailableCode(code string) bool {
	switch code {
	case "57P01", // admin_shutdown: "terminating connection due to administrator command"
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now: "the database system is starting up / shutting down"
		"57014", // query_canceled: statement_timeout
		"55P03", // lock_not_available: lock_timeout
		"25006", // read_only_sql_transaction: a standby after failover
		"40001", // serialization_failure (unmapped ones)
		"40P01": // deadlock_detected
		return true
	}
	if len(code) < 2 {
		return false
	}
	switch code[:2] {
	case "08", // connection exception
		"53": // insufficient resources: too many connections, disk full, out of memory
		return true
	}
	return false
}
