package openapi

// StatsFields points at the counters every traffic stats object has
// (LoadBalancerStats, ListenerStats, PoolStats, MemberStats), so the agent
// filling them and the API summing them over nodes handle the four alike.
type StatsFields struct {
	ConnectionsCurrent, ConnectionsPeak, ConnectionsTotal, RequestsTotal **int64
	BytesIn, BytesOut                                                    **int64
	Responses1xx, Responses2xx, Responses3xx, Responses4xx, Responses5xx **int64
	Errors                                                               **int64
	// ResponseTimeMs and TotalTimeMs are averages (not summed).
	ResponseTimeMs, TotalTimeMs **int64
}

// Summed lists the fields that add up over nodes (all but the averages).
func (f StatsFields) Summed() []**int64 {
	return []**int64{f.ConnectionsCurrent, f.ConnectionsPeak, f.ConnectionsTotal, f.RequestsTotal, f.BytesIn, f.BytesOut,
		f.Responses1xx, f.Responses2xx, f.Responses3xx, f.Responses4xx, f.Responses5xx, f.Errors}
}

// Fields points at s's counters.
func (s *LoadBalancerStats) Fields() StatsFields {
	return StatsFields{&s.ConnectionsCurrent, &s.ConnectionsPeak, &s.ConnectionsTotal, &s.RequestsTotal, &s.BytesIn, &s.BytesOut,
		&s.Responses1xx, &s.Responses2xx, &s.Responses3xx, &s.Responses4xx, &s.Responses5xx, &s.Errors, &s.ResponseTimeMs, &s.TotalTimeMs}
}

// Fields points at s's counters.
func (s *ListenerStats) Fields() StatsFields {
	return StatsFields{&s.ConnectionsCurrent, &s.ConnectionsPeak, &s.ConnectionsTotal, &s.RequestsTotal, &s.BytesIn, &s.BytesOut,
		&s.Responses1xx, &s.Responses2xx, &s.Responses3xx, &s.Responses4xx, &s.Responses5xx, &s.Errors, &s.ResponseTimeMs, &s.TotalTimeMs}
}

// Fields points at s's counters.
func (s *PoolStats) Fields() StatsFields {
	return StatsFields{&s.ConnectionsCurrent, &s.ConnectionsPeak, &s.ConnectionsTotal, &s.RequestsTotal, &s.BytesIn, &s.BytesOut,
		&s.Responses1xx, &s.Responses2xx, &s.Responses3xx, &s.Responses4xx, &s.Responses5xx, &s.Errors, &s.ResponseTimeMs, &s.TotalTimeMs}
}

// Fields points at s's counters.
func (s *MemberStats) Fields() StatsFields {
	return StatsFields{&s.ConnectionsCurrent, &s.ConnectionsPeak, &s.ConnectionsTotal, &s.RequestsTotal, &s.BytesIn, &s.BytesOut,
		&s.Responses1xx, &s.Responses2xx, &s.Responses3xx, &s.Responses4xx, &s.Responses5xx, &s.Errors, &s.ResponseTimeMs, &s.TotalTimeMs}
}
