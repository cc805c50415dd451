// Package acceptance holds Fulcrum's end-to-end tests: a real Postgres, the
// real API, real agents each supervising a real HAProxy, and real traffic to
// real backends on loopback. Only tests live here.
package acceptance
