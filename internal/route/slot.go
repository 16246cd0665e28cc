package route

// NumSlots is the number of hash slots of a Redis Cluster.
const NumSlots = 16384

// Slot returns key's hash slot: CRC16 (XMODEM) of the key, or of its hash
// tag — the part between the first '{' and the next '}' when that part is
// not empty — modulo 16384, as the cluster specification defines.
func Slot[K ~string | ~[]byte](key K) int {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % NumSlots)
}

func indexByte[K ~string | ~[]byte](s K, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0).
func crc16[K ~string | ~[]byte](s K) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^s[i]]
	}
	return crc
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
