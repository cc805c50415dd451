package validate

// Port checks a TCP or UDP port number: 1 to 65535.
func Port(e *Errors, field string, v int) bool {
	return IntRange(e, field, v, 1, 65535)
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
