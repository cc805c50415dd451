package validate

import "github.com/fulcrumlb/fulcrum/openapi"

// Port checks a TCP or UDP port number: 1 to 65535, the bounds the document
// states for every port (TestLimitsMatchDocument checks).
func Port(e *Errors, field string, v int) bool {
	return IntRange(e, field, v, openapi.ListenerPortMin, openapi.ListenerPortMax)
}

// IntRange checks that min <= v <= max.
func IntRange(e *Errors, field string, v, min, max int) bool {
	if v < min || v > max {
		e.Add(field, "must be between %d and %d", min, max)
		return false
	}
	return true
}

// DurationMS checks a duration in milliseconds: min <= v <= max.
func DurationMS(e *Errors, field string, v, min, max int) bool {
	if v < min || v > max {
		e.Add(field, "must be between %d and %d milliseconds", min, max)
		return false
	}
	return true
}
