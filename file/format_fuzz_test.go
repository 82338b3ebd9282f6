//go:build unix

package file

import (
	"bytes"
	"syscall"
	"testing"
)

// FuzzParse: no file content panics the parser, and a record it returns
// is one that stands whole in the file, with its own data.
func FuzzParse(f *testing.F) {
	one := encodeRecord("g1.00", []byte(`{"objsync_lock":1}`))
	f.Add(one)
	f.Add(append(append(one, make([]byte, alignUp(len(one))-len(one))...), encodeRecord("g2.01", []byte("two"))...))
	f.Add([]byte(legacyHeader + "g3.02\ncontent"))
	f.Add([]byte(recordMagic + "g1.00 5 00000000\nabc"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := parse(raw, &syscall.Stat_t{})
		if c.kind != records {
			return
		}
		if c.at < 0 || c.at+c.size > len(raw) || !bytes.Equal(raw[c.at:c.at+c.size], encodeRecord(c.version, c.data)) {
			t.Fatalf("returned version %q at %d, which is not a whole record there", c.version, c.at)
		}
	})
}

// FuzzTornWrite: a file of two records, one of them damaged anywhere (a
// write torn by a crash), reads as the other one: never as damaged data,
// and never as absent.
func FuzzTornWrite(f *testing.F) {
	f.Add([]byte("first"), []byte("second"), uint(10), byte(0xff))
	f.Add([]byte{}, bytes.Repeat([]byte("x"), 5000), uint(4200), byte(0))
	f.Fuzz(func(t *testing.T, first, second []byte, at uint, b byte) {
		old := encodeRecord("g1.aa", first)
		cur := content{kind: records, at: 0, size: len(old)}
		next := encodeRecord("g2.bb", second)
		file := make([]byte, cur.place(len(next))+len(next))
		copy(file, old)
		copy(file[cur.place(len(next)):], next)
		i := int(at % uint(len(file)))
		if file[i] == b {
			return // no damage
		}
		file[i] = b
		c := parse(file, &syscall.Stat_t{})
		switch {
		case c.kind != records:
			t.Fatalf("a file with one damaged record read as kind %d", c.kind)
		case c.version == "g1.aa" && !bytes.Equal(c.data, first), c.version == "g2.bb" && !bytes.Equal(c.data, second):
			t.Fatalf("version %q read with other data", c.version)
		case c.version != "g1.aa" && c.version != "g2.bb":
			t.Fatalf("read version %q", c.version)
		}
	})
}
