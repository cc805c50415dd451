package snapshot

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
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

// The node's part, compressed, is stored, not compressed (gzipWriters): one
// gzip member holding one stored deflate block and the final empty one, the
// bytes compress/gzip writes at gzip.NoCompression, written here without a
// compressor (its reset and close cost more than the part's few hundred
// bytes: issue 10).

// maxStoredBlock is the largest deflate stored block.
const maxStoredBlock = 65535

// storedGzipOverhead is what a stored gzip member adds to its data: the
// header, two block headers, the CRC-32 and the size.
const storedGzipOverhead = 10 + 5 + 5 + 8

// appendStoredGzip appends p (at most maxStoredBlock bytes) as one gzip
// member, as gzip.NewWriterLevel(w, gzip.NoCompression) writes it.
func appendStoredGzip(b, p []byte) []byte {
	// ID1 ID2, CM deflate, no flags, no time, no extra flags, unknown OS.
	b = append(b, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff)
	if len(p) > 0 {
		n := uint16(len(p))
		b = append(b, 0, byte(n), byte(n>>8), byte(^n), byte(^n>>8))
		b = append(b, p...)
	}
	b = append(b, 1, 0, 0, 0xff, 0xff) // the final block, empty
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(p))
	return binary.LittleEndian.AppendUint32(b, uint32(len(p)))
}
