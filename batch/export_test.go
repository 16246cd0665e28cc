package batch

import "strconv"

// NextMark returns the name the next transaction run with replies off
// gives its connection (CLIENT SETNAME).
func NextMark() string { return "rbatch-tx-" + strconv.FormatUint(marks.Load()+1, 10) }

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
