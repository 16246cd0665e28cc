package route

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSlotKnownVectors(t *testing.T) {
	// Values from the cluster specification and CLUSTER KEYSLOT.
	cases := map[string]int{
		"123456789":            12739, // CRC16/XMODEM check value 0x31C3
		"":                     0,
		"foo":                  12182,
		"bar":                  5061,
		"{user1000}.following": Slot("user1000"),
		"{user1000}.followers": Slot("user1000"),
		"foo{}{bar}":           Slot("foo{}{bar}"), // empty first tag: the whole key
		"foo{{bar}}zap":        Slot("{bar"),
		"foo{bar}{zap}":        Slot("bar"),
		"{order:42}:items":     Slot("order:42"),
	}
	for key, want := range cases {
		assert.Equal(t, want, Slot(key), "Slot(%q)", key)
	}
	assert.Equal(t, uint16(0x31C3), crc16("123456789"))
}

func FuzzSlot(f *testing.F) {
	for _, k := range []string{"", "a", "{a}b", "a{}b", "{", "}", "{{}}", "x{y}z{w}"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		s := Slot(key)
		if s < 0 || s >= NumSlots {
			t.Fatalf("Slot(%q) = %d out of range", key, s)
		}
		// Keys sharing a non-empty tag share a slot.
		if s2 := Slot("prefix" + key); key != "" && key[0] == '{' {
			if j := indexTagEnd(key); j > 1 && s != s2 {
				t.Fatalf("tagged %q: %d vs %d", key, s, s2)
			}
		}
	})
}

func indexTagEnd(k string) int {
	for i := 1; i < len(k); i++ {
		if k[i] == '}' {
			return i
		}
	}
	return -1
}
