package haproxy

type globalView struct {
	MaxConn         int
	StatsSocket     string
	HardStopAfter   string
	ServerStateFile string
}
