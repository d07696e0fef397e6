package metrics

// readWindow is the archive ReadAt reads for a query over [from, until)
// with the clock at now, and the slots [start, end) it reads from it. It
// must choose as ReadAt does (TestPlanReadMatchesRead checks that it does).
func readWindow(s *series, from, until, now int64) (ai int, start, end int64) {
	arch := s.schema.Archives
	ai = len(arch) - 1
	for i, a := range arch {
		if now-from <= a.Retention {
			ai = i
			break
		}
	}
	a := arch[ai]
	start = from - mod(from, a.Step) + a.Step
	end = until - mod(until, a.Step) + a.Step
	if end <= start {
		end = start
	}
	return ai, start, end
}

// PlanRead is what ReadAt would read for name, from the index and the
// series' retentions alone: the number of points and their step (0, 0 for
// an unknown name). The query cost check adds these up before anything is
// read.
func (st *Storage) PlanRead(name string, from, until, now int64) (points, step int64) {
	st.mu.RLock()
	s := st.byName[name]
	st.mu.RUnlock()
	if s == nil {
		return 0, 0
	}
	ai, start, end := readWindow(s, from, until, now)
	step = s.schema.Archives[ai].Step
	return (end - start) / step, step
}
