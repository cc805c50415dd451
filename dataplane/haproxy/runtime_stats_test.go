package haproxy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// steady zeroes what moves with the clock alone (seconds since a change),
// so that two reads of an idle worker compare equal.
func steady(proxies []ProxyStat, servers []ServerStat) ([]ProxyStat, []ServerStat) {
	for i := range proxies {
		proxies[i].LastChangeSeconds, proxies[i].DowntimeSeconds = 0, 0
	}
	for i := range servers {
		servers[i].LastChangeSeconds, servers[i].DowntimeSeconds = 0, 0
	}
	return proxies, servers
}

// With a real HAProxy: reading every proxy by name in pieces
// (StatsOfEach, several commands per exchange) gives the rows of one whole
// `show stat`, in its order; names HAProxy has no proxy of are left out,
// also as the first command of a piece; through the master CLI too.
func TestStatsOfEachMatchesStats(t *testing.T) {
	a, b := htMember(t, "a"), htMember(t, "b")
	var extra strings.Builder
	var names []string
	for i := range 6 {
		fmt.Fprintf(&extra, "\nfrontend lsn_%d\n    bind 127.0.0.1:%d\n    default_backend pool_%d\n", i, freePort(t), i)
		fmt.Fprintf(&extra, "\nbackend pool_%d\n", i)
		for j := range i % 3 {
			fmt.Fprintf(&extra, "    server mbr_%d_%d 127.0.0.1:%d\n", i, j, 9+j)
		}
		names = append(names, fmt.Sprintf("lsn_%d", i), fmt.Sprintf("pool_%d", i))
	}
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}, {"mbr_b", htHostPort(b)}}, Extra: extra.String()}, nil)
	htWaitStatus(t, env.rt, "mbr_a", "UP")
	htWaitStatus(t, env.rt, "mbr_b", "UP")
	ctx := htCtx(t, 30*time.Second)
	names = append([]string{"lsn_web", "pool_web", "pool_static"}, names...)

	wantP, wantS, err := env.rt.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantP, wantS = steady(wantP, wantS)
	if len(wantP) != len(names) || len(wantS) != 2+1+6 {
		t.Fatalf("whole read: %d proxies, %d servers", len(wantP), len(wantS))
	}
	read := func(rt Runtime, pieces ...[]string) ([]ProxyStat, []ServerStat) {
		t.Helper()
		var proxies []ProxyStat
		var servers []ServerStat
		for _, piece := range pieces {
			px, sv, err := rt.StatsOfEach(ctx, piece)
			if err != nil {
				t.Fatalf("StatsOfEach(%v): %v", piece, err)
			}
			proxies, servers = append(proxies, px...), append(servers, sv...)
		}
		return steady(proxies, servers)
	}
	for _, tc := range []struct {
		name   string
		rt     Runtime
		pieces [][]string
	}{
		{"one piece", env.rt, [][]string{names}},
		{"pieces, a gone pool first", env.rt, [][]string{append([]string{"pool_gone"}, names[:5]...), names[5:9], append(names[9:], "lsn_gone")}},
		{"master CLI", Runtime{Socket: env.proc.MasterSocket(), Worker: htCurrentWorkers(t, env.proc)[0].PID}, [][]string{names[:4], names[4:]}},
	} {
		proxies, servers := read(tc.rt, tc.pieces...)
		if !reflect.DeepEqual(proxies, wantP) || !reflect.DeepEqual(servers, wantS) {
			t.Errorf("%s: rows differ from a whole `show stat`:\n proxies %+v\n want    %+v\n servers %+v\n want    %+v", tc.name, proxies, wantP, servers, wantS)
		}
	}
	if px, sv, err := env.rt.StatsOfEach(ctx, []string{"pool_gone", "lsn_gone"}); err != nil || px != nil || sv != nil {
		t.Fatalf("only names HAProxy does not have: %v %v %v; want nothing", px, sv, err)
	}
	if _, _, err := env.rt.StatsOfEach(ctx, []string{"pool_web", "pool web"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a name with a space: %v, want ErrInvalidArgument", err)
	}
}

func TestJoinStatAnswers(t *testing.T) {
	const h = "# pxname,svname,type\n"
	for _, tc := range []struct {
		out  string
		n    int
		want string
		bad  bool
	}{
		{h + "p,BACKEND,1\n\n" + h + "f,FRONTEND,0\n\n", 2, h + "p,BACKEND,1\nf,FRONTEND,0\n", false},
		{noSuchProxy + "\n\n" + h + "p,s,2\np,BACKEND,1\n\n", 2, h + "p,s,2\np,BACKEND,1\n", false},
		{noSuchProxy + "\n\n", 1, "", false},
		{h + "p,BACKEND,1\n\n", 2, "", true},                           // a command not answered
		{h + "p,BACKEND,1\n\nUnknown command.\n\n", 2, "", true},       // an answer that is no rows
		{"Permission denied\n\n" + h + "p,BACKEND,1\n\n", 2, "", true}, // likewise, first
	} {
		got, err := joinStatAnswers(tc.out, tc.n)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("joinStatAnswers(%q, %d) = %q, %v; want %q (error: %v)", tc.out, tc.n, got, err, tc.want, tc.bad)
		}
	}
}
