package objsync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/procid"
)

// lockFormat is the version of the lock object's layout. A reader refuses
// objects of a newer format rather than guess at them.
const lockFormat = 1

const (
	stateHeld = "held"
	stateFree = "free"
	// The states of a queue lock's objects (see queuelock.go): its marker
	// at the lock's key, a ticket whose holder's turn was ended by
	// another, and a ticket's done slot after its release or departure.
	stateQueue     = "queue"
	stateAbandoned = "abandoned"
	stateDone      = "done"
	stateLeft      = "left"
)

// lockObject is what is stored at a lock's key, as JSON. Holder, Seq,
// Fence, TTL and State take part in the protocol, and the holder's process
// identity, host name included, where a contender on the same machine can
// check it (holderProcess); the wall-clock times are there for people and
// are never trusted.
type lockObject struct {
	Format int    `json:"objsync_lock"`
	State  string `json:"state"`
	// Holder is a random id, new for every acquisition attempt. In the free
	// state it is the id of whoever freed the lock.
	Holder string `json:"holder"`
	Fence  int64  `json:"fence"`
	// Seq counts the writes made under one Holder. With Holder it makes the
	// content of every write unique, which the protocol needs on stores
	// whose versions are hashes of the content, and it tells which of
	// several attempts landed when answers were lost.
	Seq       int64 `json:"seq"`
	TTLMillis int64 `json:"ttl_ms"`
	// Prev and PrevSeq name the state that an acquisition replaced, by
	// its holder and sequence number. A releaser whose answer was lost
	// learns from them that its free state had landed before the next
	// holder came. Absent in objects of objsync before they were added.
	Prev    string `json:"prev,omitempty"`
	PrevSeq int64  `json:"prev_seq,omitempty"`
	// Queue lists the Locks waiting for a held lock, in the order they
	// joined; the release hands the lock to the first. QueueSeq counts
	// the changes to the queue, so that a waiter leaving it never writes
	// bytes that were written before.
	Queue    []waiter `json:"queue,omitempty"`
	QueueSeq int64    `json:"queue_seq,omitempty"`
	// Handed marks a held state written by the release that handed the
	// lock over, not by its holder; the holder's own writes clear it. A
	// leader has been seen alive only once it wrote.
	Handed bool `json:"handed,omitempty"`
	// Slots is the number of ticket slots of a queue lock, in its marker.
	Slots int    `json:"slots,omitempty"`
	Value string `json:"value,omitempty"`
	holderProcess
	AcquiredAt time.Time `json:"acquired_at"`
	WrittenAt  time.Time `json:"written_at"`
}

// waiter is a Lock in a lock's queue: what the held state that hands the
// lock to it is made of. Holder and Seq are the waiter's attempt and the
// number of its write that joined the queue; its lease, once the lock is
// handed to it, counts from when it sent that write.
type waiter struct {
	Holder    string `json:"holder"`
	Seq       int64  `json:"seq"`
	TTLMillis int64  `json:"ttl_ms"`
	Value     string `json:"value,omitempty"`
	holderProcess
}

// holderProcess is the process of a holder or waiter: its host name and
// pid, and, where its system has /proc, what lets a process on the same
// machine know that it has ended (package procid). A contender that finds
// it ended takes the lock over without waiting out its TTL.
type holderProcess struct {
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// Process is kept apart from the fields above so that a reader that
	// knows less of it than its writer meant never judges it: objsync
	// before this never looks there, and a field this version does not
	// know makes the whole of it unknown (see processID.UnmarshalJSON).
	Process *processID `json:"process,omitempty"`
}

// processID is what makes a pid mean one process (procid.ID): the
// kernel's boot id, the pid and time namespaces, the start time, and what
// the holder's work runs in besides: a process group (WithProcessGroup),
// or a cgroup v2 (WithCgroup), by its path from the root of the hierarchy
// of cgroup namespace CgroupNS and its id (the directory's inode number).
// The holder has ended only once those are empty too.
type processID struct {
	Boot     string `json:"boot_id"`
	PIDNS    string `json:"pid_ns"`
	TimeNS   string `json:"time_ns,omitempty"`
	Start    uint64 `json:"start_ticks"`
	Group    int    `json:"pgid,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	CgroupNS string `json:"cgroup_ns,omitempty"`
	CgroupID uint64 `json:"cgroup_id,omitempty"`
	// unknown is set when the stored object holds a field this version
	// does not know: a condition on the holder's end it cannot check.
	unknown bool
	// raw is the JSON it was read from, written back as it was (by a
	// waiter joining, a hand-off), so that nothing of it is lost.
	raw json.RawMessage
}

// UnmarshalJSON decodes p strictly: an unknown field leaves p unknown,
// never judged, rather than judged on part of what its writer recorded.
// Not even an object (a later format's, or a broken one), it is unknown
// too: the lock stays usable, freed by its TTL.
func (p *processID) UnmarshalJSON(data []byte) error {
	type plain processID
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v plain
	if dec.Decode(&v) != nil {
		v = plain{unknown: true}
	}
	*p = processID(v)
	p.raw = bytes.Clone(data)
	return nil
}

// MarshalJSON writes p as it was read, or as this process made it.
func (p *processID) MarshalJSON() ([]byte, error) {
	if p.raw != nil {
		return p.raw, nil
	}
	type plain processID
	return json.Marshal((*plain)(p))
}

// ended reports whether the process is known to have ended: procid.Ended.
func (p holderProcess) ended() bool { return procid.Ended(p.id()) }

// running reports whether the process is known to run: procid.Running.
func (p holderProcess) running() bool { return procid.Running(p.id()) }

// id returns the process as package procid knows it; the zero ID, never
// judged, if it recorded nothing or what it recorded is not known here.
func (p holderProcess) id() procid.ID {
	q := p.Process
	if q == nil || q.unknown {
		return procid.ID{}
	}
	return procid.ID{Host: p.Host, PID: p.PID, Boot: q.Boot, PIDNS: q.PIDNS, TimeNS: q.TimeNS, Start: q.Start,
		Group: q.Group, Cgroup: q.Cgroup, CgroupNS: q.CgroupNS, CgroupID: q.CgroupID}
}

// maxQueue bounds the queue, and so the size of the lock object: waiters
// beyond it poll without joining. A longer queue read from the store (a
// later version may allow one) is served all the same.
const maxQueue = 16

// position returns the index of holder in the queue, or -1.
func (o *lockObject) position(holder string) int {
	return slices.IndexFunc(o.Queue, func(w waiter) bool { return w.Holder == holder })
}

// joined returns o with w at the end of its queue.
func (o lockObject) joined(w waiter) lockObject {
	o.Queue = append(slices.Clip(o.Queue), w)
	o.QueueSeq++
	return o
}

// without returns o without holder in its queue.
func (o lockObject) without(holder string) lockObject {
	o.Queue = slices.DeleteFunc(slices.Clone(o.Queue), func(w waiter) bool { return w.Holder == holder })
	o.QueueSeq++
	return o
}

// ttl is the holder's lease; decodeLock keeps it within MaxTTL.
func (o *lockObject) ttl() time.Duration { return time.Duration(o.TTLMillis) * time.Millisecond }

func (o *lockObject) held() bool { return o.State == stateHeld }

func (o *lockObject) encode() []byte {
	data, err := json.Marshal(o)
	if err != nil {
		panic(err) // only strings, integers and times: cannot fail
	}
	return data
}

// decodeLock parses a stored lock object. Anything that is not a lock of a
// format this code knows is ErrNotLock, with the reason; so is the marker
// of a queue lock, which a plain Mutex must not touch.
func decodeLock(data []byte) (lockObject, error) {
	o, err := decodeObject(data)
	switch {
	case err != nil:
		return o, err
	case o.State == stateQueue:
		return lockObject{}, fmt.Errorf("%w: a queue lock: open it with WithQueue (objsync lock --queue)", ErrNotLock)
	case o.State != stateHeld && o.State != stateFree:
		return lockObject{}, fmt.Errorf("%w: unknown state %q", ErrNotLock, o.State)
	}
	for _, w := range o.Queue {
		if w.Holder == "" || w.Seq < 1 || w.TTLMillis < MinTTL.Milliseconds() || w.TTLMillis > MaxTTL.Milliseconds() {
			return lockObject{}, fmt.Errorf("%w: a waiter without an id, or with a ttl of %d ms, outside %v to %v", ErrNotLock, w.TTLMillis, MinTTL, MaxTTL)
		}
	}
	return o, nil
}

// decodeObject parses any object of the lock protocol, of either kind,
// and checks what all of them share.
func decodeObject(data []byte) (lockObject, error) {
	var probe struct {
		Format *int `json:"objsync_lock"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return lockObject{}, fmt.Errorf("%w: not JSON (%d bytes)", ErrNotLock, len(data))
	}
	switch {
	case probe.Format == nil:
		return lockObject{}, fmt.Errorf("%w: a JSON document without the objsync_lock field", ErrNotLock)
	case *probe.Format > lockFormat:
		return lockObject{}, fmt.Errorf("%w: format %d, written by a newer objsync (this one reads format %d)", ErrNotLock, *probe.Format, lockFormat)
	case *probe.Format < lockFormat:
		return lockObject{}, fmt.Errorf("%w: unknown format %d", ErrNotLock, *probe.Format)
	}
	var o lockObject
	if err := json.Unmarshal(data, &o); err != nil {
		return lockObject{}, fmt.Errorf("%w: %v", ErrNotLock, err)
	}
	switch {
	case o.State == stateQueue:
		return o, nil // a marker: nothing else in it counts
	case o.Holder == "" || o.Fence < 1:
		return lockObject{}, fmt.Errorf("%w: no holder or fence", ErrNotLock)
	case o.held() && (o.TTLMillis < MinTTL.Milliseconds() || o.TTLMillis > MaxTTL.Milliseconds()):
		return lockObject{}, fmt.Errorf("%w: held with a ttl of %d ms, outside %v to %v", ErrNotLock, o.TTLMillis, MinTTL, MaxTTL)
	case o.TTLMillis < 0 || o.TTLMillis > MaxTTL.Milliseconds():
		return lockObject{}, fmt.Errorf("%w: a ttl of %d ms, outside 0 to %v", ErrNotLock, o.TTLMillis, MaxTTL)
	}
	return o, nil
}

// stateKey identifies a state written by or for a holder: its holder id
// and sequence number. A waiter joining or leaving the queue changes the
// object's version but not its key, and extends nobody's lease, so the
// takeover rule counts how long the key, not the version, is unchanged:
// waiters cannot keep a dead holder's lock alive.
type stateKey struct {
	exists, held bool
	holder       string
	seq          int64
}

// snapshot is one state of a lock key as last read or written.
type snapshot struct {
	exists  bool
	version driver.Version
	obj     lockObject
	// since, if not zero, is an instant of this process's monotonic clock
	// before which, by the store's clock, the object was last written
	// (WithStoreClock): the read's return less the age the store gave.
	since time.Time
}

func (s *snapshot) key() stateKey {
	return stateKey{exists: s.exists, held: s.exists && s.obj.held(), holder: s.obj.Holder, seq: s.obj.Seq}
}

// fence is the fence of the state, 0 for a key never written.
func (s *snapshot) fence() int64 {
	if !s.exists {
		return 0
	}
	return s.obj.Fence
}

// follows reports whether s was written over the state that holder wrote
// with sequence number seq.
func (s *snapshot) follows(holder string, seq int64) bool {
	return s.exists && s.obj.Prev == holder && s.obj.PrevSeq == seq
}
