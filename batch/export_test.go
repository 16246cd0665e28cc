package batch

// Pending returns how many groups wait in the buffers of s's lines.
func Pending(s *Shared) int {
	n := 0
	for i := range s.lines {
		if ln := s.lines[i].Load(); ln != nil {
			ln.mu.Lock()
			n += len(ln.pending)
			ln.mu.Unlock()
		}
	}
	return n
}
