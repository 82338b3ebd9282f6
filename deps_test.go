package objsync_test

import (
	"strings"
	"testing"
)

// otelSDK is the OpenTelemetry SDK's import path prefix: the library uses
// the API only, so that a program picks its SDK (or none).
const otelSDK = "go.opentelemetry.io/otel/sdk"

// TestNoOTelSDKDependency: no package of the module imports the
// OpenTelemetry SDK (only tests do), and the library and its drivers do not
// link it, except gcs, whose Google Cloud Storage client
// (cloud.google.com/go/storage) imports it itself.
func TestNoOTelSDKDependency(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	list := func(pkgs ...string) map[string][]string {
		t.Helper()
		out, err := goOffline(append([]string{"list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}, pkgs...)...).Output()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		imports := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			imports[f[0]] = f[1:]
		}
		return imports
	}
	for pkg, imports := range list("./...") {
		if !strings.HasPrefix(pkg, "github.com/objsync/objsync") {
			continue
		}
		for _, imp := range imports {
			if strings.HasPrefix(imp, otelSDK) {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	library := []string{".", "./driver", "./driver/drivertest", "./mem", "./file", "./s3", "./minio", "./azblob"}
	for dep := range list(library...) {
		if !strings.HasPrefix(dep, otelSDK) {
			continue
		}
		for _, pkg := range library {
			if _, ok := list(pkg)[dep]; ok {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}
