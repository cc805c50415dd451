package snapshot

import (
	"encoding/json"
	"strconv"
)

// The node's part of a snapshot (nodePart) is encoded for every node and
// every change pushed to it (1,000 per write at 1,000 nodes): by hand, not
// through encoding/json's reflection (issue 10), to the same bytes.

// appendJSON appends np as encoding/json encodes it.
func (np *nodePart) appendJSON(b []byte) []byte {
	b = append(b, `{"format_version":`...)
	b = strconv.AppendInt(b, int64(np.FormatVersion), 10)
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, np.Revision, 10)
	if np.Traceparent != nil {
		b = append(b, `,"traceparent":`...)
		b = appendJSONString(b, *np.Traceparent)
	}
	if np.Node != nil {
		b = append(b, `,"node":{"admin_state":`...)
		b = appendJSONString(b, string(np.Node.AdminState))
		b = append(b, `,"id":`...)
		b = appendJSONString(b, np.Node.Id)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, np.Node.Name)
		b = append(b, '}')
	}
	if np.Traceparents != nil {
		b = append(b, `,"traceparents":`...)
		if *np.Traceparents == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i, tp := range *np.Traceparents {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, tp)
			}
			b = append(b, ']')
		}
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, as encoding/json does: plain
// printable ASCII as it is, anything else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
