package api

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// convertJSON copies between an API type and a store type that share JSON field
// names (the nested objects: timeouts, health monitors, rule actions, …).
// Defaults for omitted fields are applied afterwards, on the store type.
func convertJSON[T any](src any) T {
	var dst T
	b, err := json.Marshal(src)
	if err != nil {
		panic(fmt.Sprintf("api: convert %T: %v", src, err))
	}
	if err := json.Unmarshal(b, &dst); err != nil {
		panic(fmt.Sprintf("api: convert %T to %T: %v", src, dst, err))
	}
	return dst
}

// prefixStrings renders validated prefixes in canonical (masked) form.
func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
