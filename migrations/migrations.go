// Package migrations holds Fulcrum's numbered SQL migrations, embedded in the
// binary and applied by `fulcrum migrate` and at API start.
package migrations

import "embed"

// FS holds the migrations, named NNN_description.sql and applied in order.
//
//go:embed *.sql
var FS embed.FS
