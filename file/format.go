//go:build unix

package file

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"syscall"

	"github.com/objsync/objsync/driver"
)

// The layout of an object's file (format 2). A write never touches the
// record that holds the current version: it writes a new record elsewhere
// in the same file, in place, and fsyncs it. So a writer killed at any
// instant leaves the current record whole beside, at worst, a torn one
// whose checksum fails, and readers take the valid record with the highest
// generation. Writing in place rather than renaming a new file over the
// old one is what lets several users share a lock file in a sticky
// directory such as /tmp, where only a file's owner may replace it.
//
// A record starts at a multiple of recordAlign:
//
//	objsync-file/2 VERSION LENGTH CRC\n DATA
//
// VERSION is "g" GENERATION "." NONCE, LENGTH the length of DATA in
// decimal, CRC the CRC-32C of VERSION, a zero byte and DATA in hex.
const (
	recordMagic = "objsync-file/2 "
	recordAlign = 4096
	// legacyHeader starts the files of format 1, which held one header
	// line and the content, and were replaced by rename.
	legacyHeader = "objsync-file/1 "
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord returns the record of data at version.
func encodeRecord(version driver.Version, data []byte) []byte {
	rec := fmt.Appendf(nil, "%s%s\n", recordMagic, recordHeader(version, data))
	return append(rec, data...)
}

// recordHeader returns what follows recordMagic on a record's first line.
func recordHeader(version driver.Version, data []byte) string {
	sum := crc32.Update(crc32.Checksum([]byte(version+"\x00"), castagnoli), castagnoli, data)
	return fmt.Sprintf("%s %d %08x", version, len(data), sum)
}

// decodeRecord decodes the record at the start of b, if there is a whole
// and valid one, and returns it with its length in b.
func decodeRecord(b []byte) (version driver.Version, data []byte, n int, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(recordMagic))
	if !ok {
		return "", nil, 0, false
	}
	line, body, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return "", nil, 0, false
	}
	fields := strings.Fields(string(line))
	if len(fields) != 3 || generation(driver.Version(fields[0])) == 0 {
		return "", nil, 0, false
	}
	length, err := strconv.Atoi(fields[1])
	if err != nil || length < 0 || length > len(body) {
		return "", nil, 0, false
	}
	version, data = driver.Version(fields[0]), body[:length]
	// Only the header encodeRecord writes counts: the checksum does not
	// cover the header's spelling, and a header written some other way
	// ("+3", "03", a tab, upper-case hex) is damage or not ours.
	if string(line) != recordHeader(version, data) {
		return "", nil, 0, false
	}
	return version, data, len(b) - len(body) + length, true
}

// generation returns the generation of a version this driver made, or 0.
func generation(v driver.Version) uint64 {
	g, _, ok := strings.Cut(string(v), ".")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimPrefix(g, "g"), 10, 64)
	return n
}

// A content kind says what a file holds.
type kind int

const (
	absent  kind = iota // no file, an empty one, or only a torn first record
	records             // format 2
	legacy              // format 1
	foreign             // written by something else
)

// content is what a file holds, as read under the directory's lock.
type content struct {
	kind    kind
	data    []byte
	version driver.Version
	// at and size place the current record (records only).
	at, size int
}

// parse reads a file's bytes. st identifies the file, for the version of
// foreign content.
func parse(raw []byte, st *syscall.Stat_t) content {
	var best content
	for off := 0; off < len(raw); {
		v, data, n, ok := decodeRecord(raw[off:])
		if !ok {
			off += recordAlign
			continue
		}
		if best.kind != records || generation(v) > generation(best.version) {
			best = content{kind: records, data: data, version: v, at: off, size: n}
		}
		off += alignUp(n) // what a record holds is never read as a record
	}
	switch {
	case best.kind == records:
		return best
	case len(raw) == 0 || bytes.HasPrefix(raw, []byte(recordMagic)):
		// Empty (touch, flock(1)), or the first record of the file torn
		// by a crash: only a first write leaves no whole record behind.
		return content{kind: absent}
	}
	if rest, ok := bytes.CutPrefix(raw, []byte(legacyHeader)); ok {
		if line, data, ok := bytes.Cut(rest, []byte("\n")); ok {
			return content{kind: legacy, data: data, version: driver.Version(line)}
		}
	}
	// Not ours: the version must still change when the file does, so hash
	// what identifies this content in this file.
	sum := sha256.New()
	sum.Write(raw)
	fmt.Fprintf(sum, "%d/%d/%d", st.Dev, st.Ino, st.Size)
	return content{kind: foreign, data: raw, version: driver.Version("raw-" + hex.EncodeToString(sum.Sum(nil)[:16]))}
}

// place returns where a record of n bytes goes so that it does not overlap
// the current one: at the start if that is free and large enough, else
// after the current record.
func (c content) place(n int) int {
	switch {
	case c.kind != records:
		return 0
	case c.at >= n:
		return 0
	}
	return alignUp(c.at + c.size)
}

func alignUp(n int) int { return (n + recordAlign - 1) / recordAlign * recordAlign }
