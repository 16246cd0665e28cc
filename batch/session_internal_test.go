package batch

import "testing"

// Push joins commands that lie back to back in the queue's buffer into one
// frame, and only those.
func TestAdjacent(t *testing.T) {
	buf := []byte("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n")
	a, b := buf[0:14], buf[14:28]
	other := []byte("*1\r\n$4\r\nPING\r\n")
	for _, c := range []struct {
		name string
		a, b []byte
		want bool
	}{
		{"back to back", a, b, true},
		{"a gap between", buf[0:13], b, false},
		{"the other way round", b, a, false},
		{"another array", a, other, false},
		{"no room past a", a[:14:14], b, false},
		{"empty b", a, buf[14:14], false},
	} {
		if got := adjacent(c.a, c.b); got != c.want {
			t.Errorf("%s: adjacent = %v, want %v", c.name, got, c.want)
		}
	}
}
