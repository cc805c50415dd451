package api

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// A fleet's polls are most of the API's requests (issue 10: per node and
// write, the woken poll and the next one). The document's generic check
// (route lookup, parameter schemas) and the generated binding cost a tenth
// of the API's CPU per write at 1,000 nodes; pollFast takes the polls whose
// parameters are plainly valid — only after, wait, delta and applied, once
// each, as digits, a duration or true/false; the format and protocol headers
// as digits, once each; no control characters — straight to the handler
// with the parameters the binding would have made. Anything else takes the
// generic check and the generated route, so every refusal reads as before.

// pollFast answers a poll as the generated route would, and reports whether
// it did; false leaves the request to the generic path.
func pollFast(c echo.Context, h *handlers) (bool, error) {
	req := c.Request()
	id := c.Param("id")
	if req.URL.RawPath != "" || id == "" || utf8.RuneCountInString(id) > openapi.ParamIDMaxLength ||
		strings.ContainsFunc(id, isControlRune) || strings.ContainsRune(id, '%') || !utf8.ValidString(id) {
		return false, nil
	}
	var p openapi.GetNodeSnapshotParams
	q, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return false, nil
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return false, nil
		}
		v := vs[0]
		switch k {
		case "after", "applied":
			n, ok := plainInt(v)
			if !ok {
				return false, nil
			}
			if k == "after" {
				p.After = &n
			} else {
				p.Applied = &n
			}
		case "delta":
			var d bool
			switch v {
			case "true":
				d = true
			case "false":
			default:
				return false, nil
			}
			p.Delta = &d
		case "wait":
			if len(v) == 0 || len(v) > 16 || strings.ContainsFunc(v, func(r rune) bool {
				return !(r >= '0' && r <= '9' || r == '.' || r >= 'a' && r <= 'z')
			}) {
				return false, nil
			}
			p.Wait = &v
		default:
			return false, nil
		}
	}
	for _, hp := range []struct {
		name   string
		to     **string
		digits bool
	}{{agentFormatHeader, &p.FulcrumAgentFormat, true}, {agentProtocolHeader, &p.FulcrumAgentProtocol, true}, {"Accept-Encoding", &p.AcceptEncoding, false}} {
		vs, found := req.Header[hp.name]
		if !found {
			continue
		}
		if len(vs) != 1 {
			return false, nil
		}
		v := vs[0]
		if hp.digits {
			if _, ok := plainInt(v); !ok || len(v) > 3 {
				return false, nil
			}
		} else if strings.ContainsFunc(v, isControlRune) || !utf8.ValidString(v) {
			return false, nil
		}
		*hp.to = &v
	}
	res, err := h.GetNodeSnapshot(req.Context(), openapi.GetNodeSnapshotRequestObject{Id: id, Params: p})
	if err != nil {
		return true, err
	}
	return true, res.VisitGetNodeSnapshotResponse(c.Response())
}

// plainInt parses a non-negative decimal integer of at most 18 digits.
func plainInt(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// isPollRequest says whether req is a node's poll (GET /v1/nodes/{id}/snapshot).
func isPollRequest(req *http.Request) bool {
	return req.Method == http.MethodGet && isSnapshotPath(req.URL.Path)
}
