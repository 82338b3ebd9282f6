package objsync

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzDecodeLock: no input panics the decoder; anything it refuses is
// ErrNotLock; anything it accepts is within the ranges the protocol's
// arithmetic relies on, and encodes to bytes that decode to the same lock.
func FuzzDecodeLock(f *testing.F) {
	now := time.Date(2026, 12, 2, 4, 16, 0, 0, time.UTC)
	held := lockObject{Format: lockFormat, State: stateHeld, Holder: "h", Fence: 7, Seq: 2, TTLMillis: 1000,
		Prev: "p", PrevSeq: 3, Value: "v", AcquiredAt: now, WrittenAt: now,
		holderProcess: holderProcess{Host: "host", PID: 42, Process: &processID{Boot: "b", PIDNS: "pid:[1]", Start: 9, Cgroup: "/c", CgroupNS: "cgroup:[2]", CgroupID: 5}}}
	free := held
	free.State = stateFree
	for _, seed := range [][]byte{
		held.encode(), free.encode(), nil, []byte("{}"), []byte(`{"objsync_lock":2}`),
		[]byte(`{"objsync_lock":1,"state":"held","holder":"x","fence":9223372036854775807,"ttl_ms":9300000000000}`),
		[]byte(`{"objsync_lock":1,"state":"free","holder":"x","fence":1,"ttl_ms":-5}`),
		[]byte(`{"objsync_lock":1,"state":"held","holder":"x","fence":1,"ttl_ms":1000,"process":{"boot_id":"b","future":1}}`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := decodeLock(data)
		if err != nil {
			if !errors.Is(err, ErrNotLock) {
				t.Fatalf("refused with %v, not ErrNotLock", err)
			}
			return
		}
		switch {
		case o.Fence < 1 || o.Holder == "":
			t.Fatalf("accepted fence %d, holder %q", o.Fence, o.Holder)
		case o.ttl() < 0 || o.ttl() > MaxTTL || o.held() && o.ttl() < MinTTL:
			t.Fatalf("accepted a %v ttl for state %q", o.ttl(), o.State)
		}
		again, err := decodeLock(o.encode())
		if err != nil || !bytes.Equal(again.encode(), o.encode()) {
			t.Fatalf("does not round-trip: %v\n%s\n%s", err, o.encode(), again.encode())
		}
	})
}
