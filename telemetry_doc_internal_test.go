package objsync

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
)

// documentedMetric is a metric as the package documentation (doc.go) and
// the README's table describe it.
type documentedMetric struct {
	Instrument string // histogram, counter, up-down
	Unit       string
	DocText    string // doc.go's description, on one line
	// Attrs are the README's attributes besides objsync.lock.kind, with
	// the values each takes.
	Attrs map[string][]string
}

// DocumentedMetrics is documentedMetrics for the external tests.
var DocumentedMetrics = documentedMetrics

var (
	docMetricRow  = regexp.MustCompile(`^//\t(objsync\.[a-z._]+)\s+(histogram|up-down|counter), (\S+)\s+(.*)$`)
	docContinued  = regexp.MustCompile(`^//\t\s{20,}(\S.*)$`)
	readmeRow     = regexp.MustCompile("^\\| `(objsync\\.[a-z._]+)` \\| ([^|]+) \\|([^|]*)\\|$")
	readmeAttr    = regexp.MustCompile("`([a-z._]+)`: ([a-z_, ]+)")
	readmeInstrum = map[string]string{"histogram": "histogram", "counter": "counter", "up-down counter": "up-down"}
)

// documentedMetrics reads the metrics table of doc.go ("Metrics and
// traces") and that of README.md ("Metrics and traces"), and fails unless
// both list the same metrics with the same instrument and unit, and doc.go
// names every attribute and value that the README gives a metric.
func documentedMetrics(t *testing.T, dir string) map[string]documentedMetric {
	t.Helper()
	src, err := os.ReadFile(dir + "/doc.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]documentedMetric{}
	last := ""
	for _, line := range strings.Split(string(src), "\n") {
		if m := docMetricRow.FindStringSubmatch(line); m != nil {
			last = m[1]
			doc[last] = documentedMetric{Instrument: m[2], Unit: m[3], DocText: m[4]}
			continue
		}
		if m := docContinued.FindStringSubmatch(line); m != nil && last != "" {
			d := doc[last]
			d.DocText += " " + m[1]
			doc[last] = d
			continue
		}
		last = ""
	}
	readme, err := os.ReadFile(dir + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		m := readmeRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		seen[name] = true
		d, ok := doc[name]
		if !ok {
			t.Errorf("README.md lists %s, doc.go does not", name)
			continue
		}
		instrument, unit, _ := strings.Cut(strings.TrimSpace(m[2]), ", ")
		if readmeInstrum[instrument] != d.Instrument || unit != d.Unit {
			t.Errorf("%s: README.md says %q, doc.go %s, %s", name, m[2], d.Instrument, d.Unit)
		}
		d.Attrs = map[string][]string{}
		for _, a := range readmeAttr.FindAllStringSubmatch(m[3], -1) {
			values := strings.Split(strings.TrimSpace(a[2]), ", ")
			d.Attrs[a[1]] = values
			for _, v := range append([]string{a[1]}, values...) {
				if !regexp.MustCompile(`\b` + regexp.QuoteMeta(v) + `\b`).MatchString(d.DocText) {
					t.Errorf("%s: README.md gives it %s %v, doc.go does not say %s: %q", name, a[1], values, v, d.DocText)
				}
			}
		}
		doc[name] = d
	}
	for name := range doc {
		if !seen[name] {
			t.Errorf("doc.go lists %s, README.md does not", name)
		}
	}
	if len(doc) == 0 {
		t.Fatal("no metric found in doc.go")
	}
	return doc
}

// TestTelemetryValuesDocumented: every attribute value the instruments are
// recorded with (the sets newTelemetry makes) is documented, and every
// documented value is one of them.
func TestTelemetryValuesDocumented(t *testing.T) {
	doc := documentedMetrics(t, ".")
	documented := map[attribute.KeyValue]bool{}
	for _, d := range doc {
		for k, values := range d.Attrs {
			for _, v := range values {
				documented[attribute.String(k, v)] = true
			}
		}
	}
	tel := newTelemetry(&options{meterProvider: noop.NewMeterProvider()}, "mem:///k")
	var code []attribute.KeyValue
	for kv := range tel.sets {
		code = append(code, kv)
	}
	for kvs := range tel.pair {
		code = append(code, kvs[:]...)
	}
	inCode := map[attribute.KeyValue]bool{}
	for _, kv := range code {
		inCode[kv] = true
		if !documented[kv] {
			t.Errorf("the code records %s=%s, which no metric documents", kv.Key, kv.Value.String())
		}
	}
	for kv := range documented {
		if !inCode[kv] {
			t.Errorf("documented %s=%s is never recorded", kv.Key, kv.Value.String())
		}
	}
	for _, kind := range []string{"plain", "queue"} {
		got := newTelemetry(&options{queue: kind == "queue"}, "k").attrs
		if !slices.Equal(got, []attribute.KeyValue{attrKind.String(kind)}) {
			t.Errorf("a %s lock's attributes: %v", kind, got)
		}
	}
}
