package haproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CheckError is a candidate config HAProxy rejected.
type CheckError struct {
	// Alerts are the [ALERT] lines HAProxy printed, most specific first as
	// HAProxy printed them. Summary lines ("Fatal errors found in
	// configuration.") are left out when anything more specific was printed.
	Alerts []Alert
	// Output is everything HAProxy printed (stdout and stderr).
	Output string
}

// Alert is one [ALERT] line of HAProxy.
type Alert struct {
	// Line is the line of the configuration file the alert is about; 0 when
	// HAProxy does not name one.
	Line int
	// Section is the section the alert is about, as "<kind> <name>" (for
	// example "frontend lsn_x", "backend pool_y", "global"), taken from the
	// message when HAProxy names the proxy, else from the configuration
	// file's line; "" when neither is known.
	Section string
	// Server is the server (member id, mbr_…) when HAProxy names one.
	Server string
	// Message is the alert without HAProxy's prefixes ("[ALERT] (pid) :",
	// "config :", "parsing [file:line] :"). Continuation lines ("   | …")
	// are joined with newlines.
	Message string
}

func (a Alert) String() string {
	var b strings.Builder
	if a.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", a.Line)
	}
	if a.Section != "" {
		fmt.Fprintf(&b, "[%s] ", a.Section)
	}
	b.WriteString(a.Message)
	return b.String()
}

func (e *CheckError) Error() string {
	if len(e.Alerts) == 0 {
		out := strings.TrimSpace(e.Output)
		if out == "" {
			return "haproxy: configuration rejected"
		}
		return "haproxy: configuration rejected: " + lastLines(out, 3)
	}
	var b strings.Builder
	b.WriteString("haproxy: configuration rejected: ")
	const max = 5
	for i, a := range e.Alerts {
		if i == max {
			fmt.Fprintf(&b, "; and %d more", len(e.Alerts)-max)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// checkTimeout bounds `haproxy -c` when ctx has no deadline.
const checkTimeout = time.Minute

// Check runs `haproxy -c -f path` and returns *CheckError with the parsed
// [ALERT] lines on failure. Failing to run HAProxy at all is reported as a
// plain error (not *CheckError). Warnings do not fail the check.
func Check(ctx context.Context, binary, path string) error {
	if binary == "" {
		binary = "haproxy"
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, checkTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, binary, "-c", "-f", path)
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("haproxy -c %s: %w", path, ctxErr)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() < 0 {
		return fmt.Errorf("haproxy -c %s: %w", path, err)
	}
	return &CheckError{Alerts: parseAlerts(out.String(), path), Output: out.String()}
}

var (
	// "[ALERT]    (1234) : " — the pid part is absent in some builds/paths.
	alertPrefixRE = regexp.MustCompile(`^\[ALERT\]\s*(?:\(\d+\)\s*)?:\s*`)
	// Any other HAProxy-prefixed line ends an alert's continuation.
	levelPrefixRE = regexp.MustCompile(`^\[(?:NOTICE|WARNING|ALERT|DEBUG|INFO|TRACE)\]`)
	// "[file:12]" or "(file:12)"; the file part is checked against the config path.
	fileLineRE = regexp.MustCompile(`[\[(]([^\[\]()]+):(\d+)[\])]`)
	// "frontend 'lsn_x'", "backend 'pool_y'", "listen 'lb_z'", and the
	// unquoted "for frontend lsn_x: cannot bind socket".
	namedSectionRE = regexp.MustCompile(`\b(?:(frontend|backend|listen|defaults|peers|resolvers|userlist|cache|ring|mailers|program|http-errors) '([^'\s]+)'|(frontend|backend|listen) ([A-Za-z0-9_.:-]+?):(?:\s|$))`)
	// "Proxy 'lsn_x'" (kind unknown to the message).
	proxyRE = regexp.MustCompile(`(?i)\bproxy '([^'\s]+)'`)
	// "'server pool_x/mbr_y'" or "'server mbr_y'".
	serverRE = regexp.MustCompile(`'server ([A-Za-z0-9_.:-]+?)(?:/([A-Za-z0-9_.:-]+))?'`)
	// ", server 'mbr_y'".
	serverNamedRE = regexp.MustCompile(`\bserver '([A-Za-z0-9_.:-]+)'`)
)

// summaryAlerts are HAProxy's closing lines; they carry no information of
// their own when a more specific alert was printed.
var summaryAlerts = []string{
	"Error(s) found in configuration file",
	"Fatal errors found in configuration",
	"Failed to initialize server(s) addr",
	"[haproxy.main()] Some protocols failed to start their listeners",
}

// parseAlerts extracts the [ALERT] lines of HAProxy's output. cfgPath is the
// configuration file HAProxy was given: only "[file:line]" references to it
// count as line numbers (so "[127.0.0.1:8080]" is not line 8080), and the
// file itself is read to name the section a line belongs to.
func parseAlerts(output, cfgPath string) []Alert {
	var idx *cfgIndex
	if cfgPath != "" {
		idx = indexConfigFile(cfgPath)
	}
	var alerts, summaries []Alert
	inAlert := false // whether continuation lines belong to the last alert
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if loc := alertPrefixRE.FindStringIndex(line); loc != nil {
			a := parseAlert(line[loc[1]:], cfgPath, idx)
			isSummary := false
			for _, s := range summaryAlerts {
				if strings.HasPrefix(a.Message, s) {
					isSummary = true
					break
				}
			}
			if isSummary {
				summaries = append(summaries, a)
				inAlert = false
				continue
			}
			alerts = append(alerts, a)
			inAlert = true
			continue
		}
		if levelPrefixRE.MatchString(line) {
			inAlert = false
			continue
		}
		if inAlert && strings.TrimSpace(line) != "" {
			cont := strings.TrimSpace(line)
			cont = strings.TrimSpace(strings.TrimPrefix(cont, "|"))
			alerts[len(alerts)-1].Message += "\n" + cont
		}
	}
	if len(alerts) == 0 {
		return summaries
	}
	return alerts
}

func parseAlert(msg, cfgPath string, idx *cfgIndex) Alert {
	msg = strings.TrimSpace(msg)
	msg = strings.TrimPrefix(msg, "config :")
	msg = strings.TrimSpace(msg)
	var a Alert

	// Line number: the first [file:N] / (file:N) naming our config file.
	for _, m := range fileLineRE.FindAllStringSubmatchIndex(msg, -1) {
		file := msg[m[2]:m[3]]
		if !sameFile(file, cfgPath) {
			continue
		}
		n, err := strconv.Atoi(msg[m[4]:m[5]])
		if err != nil {
			continue
		}
		a.Line = n
		break
	}

	// Section and server named by the message.
	if m := serverRE.FindStringSubmatch(msg); m != nil {
		if m[2] != "" {
			a.Section = "backend " + m[1]
			a.Server = m[2]
		} else {
			a.Server = m[1]
		}
	} else if m := serverNamedRE.FindStringSubmatch(msg); m != nil {
		a.Server = m[1]
	}
	if a.Section == "" {
		// Whichever names a proxy first: "Proxy 'x'" or "frontend 'x'".
		pm := proxyRE.FindStringSubmatchIndex(msg)
		nm := namedSectionRE.FindStringSubmatchIndex(msg)
		switch {
		case pm != nil && (nm == nil || pm[0] < nm[0]):
			name := msg[pm[2]:pm[3]]
			a.Section = idx.kindOf(name) + " " + name
		case nm != nil && nm[2] >= 0:
			a.Section = msg[nm[2]:nm[3]] + " " + msg[nm[4]:nm[5]]
		case nm != nil:
			a.Section = msg[nm[6]:nm[7]] + " " + msg[nm[8]:nm[9]]
		}
	}
	if a.Section == "" && a.Line > 0 {
		a.Section = idx.sectionAt(a.Line)
	}

	a.Message = trimLocation(msg, cfgPath)
	if cfgPath != "" {
		// The file is a temporary candidate: "<path>:8" reads "line 8".
		re := regexp.MustCompile(regexp.QuoteMeta(cfgPath) + `:(\d+)`)
		a.Message = re.ReplaceAllString(a.Message, "line $1")
	}
	return a
}

// trimLocation drops the leading "parsing [file:N] :" / "[file:N] :" part
// (the line is in Alert.Line; the file is a temporary path).
func trimLocation(msg, cfgPath string) string {
	rest := msg
	lower := strings.ToLower(rest)
	if strings.HasPrefix(lower, "parsing ") {
		rest = strings.TrimSpace(rest[len("parsing "):])
	}
	if strings.HasPrefix(rest, "[") {
		if end := strings.IndexByte(rest, ']'); end > 0 {
			inner := rest[1:end]
			if i := strings.LastIndexByte(inner, ':'); i > 0 && sameFile(inner[:i], cfgPath) {
				rest = strings.TrimSpace(rest[end+1:])
				rest = strings.TrimSpace(strings.TrimPrefix(rest, ":"))
				if rest != "" {
					return rest
				}
			}
		}
	}
	return msg
}

func sameFile(file, cfgPath string) bool {
	if cfgPath == "" {
		return false
	}
	return file == cfgPath || filepath.Clean(file) == filepath.Clean(cfgPath)
}

// cfgIndex maps a configuration file's lines and proxy names to sections.
type cfgIndex struct {
	starts []cfgSection // in file order
	kinds  map[string]string
}

type cfgSection struct {
	line int    // 1-based line of the section keyword
	name string // "frontend lsn_x", "global"
}

var sectionKeywords = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true,
	"listen": true, "peers": true, "resolvers": true, "userlist": true,
	"cache": true, "program": true, "ring": true, "mailers": true,
	"http-errors": true,
}

func indexConfigFile(path string) *cfgIndex {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return indexConfig(data)
}

func indexConfig(data []byte) *cfgIndex {
	idx := &cfgIndex{kinds: map[string]string{}}
	for i, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !sectionKeywords[fields[0]] {
			continue
		}
		name := fields[0]
		if len(fields) > 1 && !strings.HasPrefix(fields[1], "#") {
			name += " " + fields[1]
			if _, dup := idx.kinds[fields[1]]; !dup {
				idx.kinds[fields[1]] = fields[0]
			}
		}
		idx.starts = append(idx.starts, cfgSection{line: i + 1, name: name})
	}
	return idx
}

// sectionAt names the section line n belongs to ("" before the first one).
func (idx *cfgIndex) sectionAt(n int) string {
	if idx == nil {
		return ""
	}
	name := ""
	for _, s := range idx.starts {
		if s.line > n {
			break
		}
		name = s.name
	}
	return name
}

// kindOf is the section keyword declaring proxy name. Without the file, the
// id prefix tells (lsn_… frontends, pool_… backends); else "proxy".
func (idx *cfgIndex) kindOf(name string) string {
	if idx != nil {
		if k, ok := idx.kinds[name]; ok {
			return k
		}
	}
	switch {
	case strings.HasPrefix(name, "lsn_"):
		return "frontend"
	case strings.HasPrefix(name, "pool_"):
		return "backend"
	}
	return "proxy"
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
