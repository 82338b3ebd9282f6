//go:build !race

package objsync

// raceEnabled says the tests run under the race detector.
const raceEnabled = false
