package api

import "context"

// DeriveNow derives the statuses of every node group with reporting nodes,
// waits until no group is left to derive, and purges what every node
// dropped: statuses and deletes as of the reports answered so far, as when
// each report did this itself.
func (s *Server) DeriveNow(ctx context.Context) error {
	if err := s.reportw.flushSeen(ctx); err != nil {
		return err
	}
	if err := s.reportw.counters.flush(ctx); err != nil {
		return err
	}
	// Every reporting group, as a full sweep marks them (markAll itself is
	// the deriver goroutine's only: it keeps the sweep's state unlocked).
	states, err := s.st.NodeGroupStates(ctx)
	if err != nil {
		return err
	}
	for g := range states {
		s.deriver.mark(g, nil, false)
	}
	if err := s.deriver.waitIdle(ctx); err != nil {
		return err
	}
	return s.st.PurgeDeleted(ctx)
}

// ReportBatches says how many transactions wrote node reports and how many
// reports they wrote.
func (s *Server) ReportBatches() (batches, reports int64) {
	return s.reportw.batches.Load(), s.reportw.written.Load()
}

// HeartbeatsAcked says how many heartbeats were acknowledged without a batch.
func (s *Server) HeartbeatsAcked() int64 { return s.reportw.acked.Load() }

// FlushCounters writes the counters of the reports answered so far.
func (s *Server) FlushCounters(ctx context.Context) error { return s.reportw.counters.flush(ctx) }

// CountersWritten says how many counter rows the replica wrote.
func (s *Server) CountersWritten() int64 { return s.reportw.counters.written.Load() }
