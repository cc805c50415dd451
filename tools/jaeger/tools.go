//go:build tools

// Package jaeger pins Jaeger v2's command for `make jaeger`.
package jaeger

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
