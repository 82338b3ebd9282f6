package objsync_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestReadmeGoBlocks compiles and vets every ```go block of README.md, so
// that the README's code stays code. The convention, for whoever edits the
// README:
//
//   - A block whose first line starts with "package" is a whole file, and
//     is vetted as it is.
//   - Any other block is a file of a package of its own: its import
//     declarations, if it starts with some, then either declarations (the
//     next line starts with "func ", "type ", "var " or "const ") or
//     statements, which become the body of
//     func example(ctx context.Context) error, with "return nil" added
//     unless they end by returning.
//   - A package the block uses without importing it is imported for it if
//     it is one of readmeImports below.
//   - An HTML comment right before the block, from a line that starts with
//     "<!-- readme-test" to a line "-->", holds Go declarations added to the
//     block's file: stand-ins for the reader's own code that the snippet
//     calls. It does not show on the rendered page.
//
// Each block is written to a directory of its own under the module and
// vetted there, so nothing is downloaded (GOPROXY=off, -mod=readonly).
// Errors name lines of README.md.
func TestReadmeGoBlocks(t *testing.T) {
	readme, abs := readReadme(t)
	blocks := goBlocks(readme)
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```go block: the test would check nothing")
	}
	dir := readmeTempDir(t)
	for i, b := range blocks {
		src, err := b.file(abs)
		if err != nil {
			t.Fatalf("README.md:%d: %v", b.line, err)
		}
		pkg := filepath.Join(dir, fmt.Sprintf("block%02d", i+1))
		if err := os.Mkdir(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, "readme.go"), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := goOffline("vet", "./"+filepath.ToSlash(dir)+"/...").CombinedOutput(); err != nil {
		t.Fatalf("go vet of the README's %d Go blocks: %v\n%s", len(blocks), err, out)
	}
}

// readmeImports are the packages a README block may use without importing
// them, by the name it uses.
var readmeImports = map[string]string{
	"context":    "context",
	"errors":     "errors",
	"fmt":        "fmt",
	"time":       "time",
	"testing":    "testing",
	"objsync":    "github.com/objsync/objsync",
	"driver":     "github.com/objsync/objsync/driver",
	"drivertest": "github.com/objsync/objsync/driver/drivertest",
}

// readmeBlock is one ```go block of the README, with the declarations of
// the HTML comment before it.
type readmeBlock struct {
	line      int // of the block's first line in README.md
	code      []string
	given     []string
	givenLine int
}

var declStart = regexp.MustCompile(`^(func|type|var|const) `)

// goBlocks returns the README's ```go blocks.
func goBlocks(readme string) []readmeBlock {
	lines := strings.Split(readme, "\n")
	var blocks []readmeBlock
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		b := readmeBlock{line: i + 2}
		// The HTML comment that ends on the line before the fence.
		if i > 0 && strings.TrimSpace(lines[i-1]) == "-->" {
			for j := i - 2; j >= 0; j-- {
				if strings.HasPrefix(strings.TrimSpace(lines[j]), "<!-- readme-test") {
					b.given, b.givenLine = lines[j+1:i-1], j+2
					break
				}
			}
		}
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			b.code = append(b.code, lines[i])
		}
		blocks = append(blocks, b)
	}
	return blocks
}

// file returns the Go file that the block of the README at readme stands
// for (see TestReadmeGoBlocks), with line directives that point into it.
func (b readmeBlock) file(readme string) ([]byte, error) {
	at := func(line int) string { return "//line " + readme + ":" + strconv.Itoa(line) + "\n" }
	if len(b.code) > 0 && strings.HasPrefix(b.code[0], "package ") {
		return []byte(at(b.line) + strings.Join(b.code, "\n") + "\n"), nil
	}
	n := 0 // the lines of the block's own imports
	for n < len(b.code) && strings.HasPrefix(b.code[n], "import") {
		if strings.HasSuffix(strings.TrimSpace(b.code[n]), "(") {
			for n < len(b.code) && strings.TrimSpace(b.code[n]) != ")" {
				n++
			}
		}
		n++
		for n < len(b.code) && strings.TrimSpace(b.code[n]) == "" {
			n++
		}
	}
	rest := strings.Join(b.code[n:], "\n")
	var body bytes.Buffer
	if len(b.given) > 0 {
		body.WriteString(at(b.givenLine) + strings.Join(b.given, "\n") + "\n")
	}
	if declStart.MatchString(rest) {
		body.WriteString(at(b.line+n) + rest + "\n")
	} else {
		body.WriteString("func example(ctx context.Context) error {\n" + at(b.line+n) + rest + "\n")
		ends, err := endsReturning(rest)
		if err != nil {
			return nil, err
		}
		if !ends {
			body.WriteString("return nil\n")
		}
		body.WriteString("}\n")
	}
	imports, err := missingImports(strings.Join(b.code[:n], "\n"), body.String())
	if err != nil {
		return nil, err
	}
	var f bytes.Buffer
	f.WriteString("package readme\n\n")
	for _, path := range imports {
		fmt.Fprintf(&f, "import %q\n", path)
	}
	if n > 0 {
		f.WriteString(at(b.line) + strings.Join(b.code[:n], "\n") + "\n")
	}
	f.Write(body.Bytes())
	return f.Bytes(), nil
}

// missingImports returns the paths of the readmeImports that body uses
// and the block's own import declarations do not import.
func missingImports(own, body string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), "README.md", "package readme\n"+own+"\n"+body, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		have[path] = true
	}
	var paths []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); ok {
			if path, known := readmeImports[x.Name]; known && !have[path] {
				have[path] = true
				paths = append(paths, path)
			}
		}
		return true
	})
	slices.Sort(paths)
	return paths, nil
}

// endsReturning reports whether statements end by returning: with a return,
// or a select each of whose cases ends with one.
func endsReturning(stmts string) (bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), "README.md", "package readme\nfunc example() {\n"+stmts+"\n}\n", parser.SkipObjectResolution)
	if err != nil {
		return false, err
	}
	list := f.Decls[0].(*ast.FuncDecl).Body.List
	if len(list) == 0 {
		return false, nil
	}
	switch last := list[len(list)-1].(type) {
	case *ast.ReturnStmt:
		return true, nil
	case *ast.SelectStmt:
		for _, c := range last.Body.List {
			body := c.(*ast.CommClause).Body
			if len(body) == 0 {
				return false, nil
			}
			if _, ok := body[len(body)-1].(*ast.ReturnStmt); !ok {
				return false, nil
			}
		}
		return true, nil
	}
	return false, nil
}

// TestReadmeElectionAfterQuickStart: the README's first Go block ("In a Go
// program") and its election block, put together in one function as a
// reader would, still compile (the election block once redeclared err),
// and the election does not campaign with the Mutex the first block locks
// (Campaign would wait for that Mutex's Unlock, with no error, for ever).
func TestReadmeElectionAfterQuickStart(t *testing.T) {
	readme, abs := readReadme(t)
	first, election := readmeBlockAfter(t, readme, "## In a Go program"), readmeBlockAfter(t, readme, "## Leader election")
	rest := strings.Join(election.code, "\n")
	if strings.HasPrefix(rest, "package ") || strings.HasPrefix(rest, "import") || declStart.MatchString(rest) {
		t.Fatalf("README.md:%d: the election block is not statements", election.line)
	}
	src, err := first.file(abs)
	if err != nil {
		t.Fatal(err)
	}
	at := func(line int) string { return "//line " + abs + ":" + strconv.Itoa(line) + "\n" }
	together := strings.TrimSuffix(string(src), "}\n") + at(election.line) + rest + "\n}\n"
	if len(election.given) > 0 {
		together += at(election.givenLine) + strings.Join(election.given, "\n") + "\n"
	}

	// The Mutexes the first block locks, and those the election is given.
	f, err := parser.ParseFile(token.NewFileSet(), "together.go", together, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	locked, campaigned := map[string]bool{}, map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		switch sel.Sel.Name {
		case "Lock", "TryLock":
			if x, ok := sel.X.(*ast.Ident); ok {
				locked[x.Name] = true
			}
		case "NewElection":
			if len(call.Args) > 0 {
				if x, ok := call.Args[0].(*ast.Ident); ok {
					campaigned[x.Name] = true
				}
			}
		}
		return true
	})
	if len(locked) == 0 || len(campaigned) == 0 {
		t.Fatalf("found no Lock (%v) or no NewElection (%v)", locked, campaigned)
	}
	for name := range campaigned {
		if locked[name] {
			t.Errorf("README.md:%d: the election campaigns with %s, which the block at README.md:%d locks: Campaign would wait for ever", election.line, name, first.line)
		}
	}

	dir := readmeTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "readme.go"), []byte(together), 0o644); err != nil {
		t.Fatal(err)
	}
	// go build, not vet: the election's statements follow the first
	// block's select, which returns, and vet reports unreachable code.
	if out, err := goOffline("build", "./"+filepath.ToSlash(dir)).CombinedOutput(); err != nil {
		t.Fatalf("the README's first Go block and its election block, put together: %v\n%s\n%s", err, out, together)
	}
}

// readmeBlockAfter returns the first ```go block after the line heading.
func readmeBlockAfter(t *testing.T, readme, heading string) readmeBlock {
	t.Helper()
	i := strings.Index(readme, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	line := strings.Count(readme[:i], "\n") + 2
	for _, b := range goBlocks(readme) {
		if b.line > line {
			return b
		}
	}
	t.Fatalf("README.md has no Go block after %q", heading)
	return readmeBlock{}
}

// readReadme returns README.md's text and its absolute path, which the
// blocks' files name in their line directives.
func readReadme(t *testing.T) (text, abs string) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if abs, err = filepath.Abs("README.md"); err != nil {
		t.Fatal(err)
	}
	return string(readme), abs
}

// readmeTempDir makes a directory in the module (so that its files import
// the module's packages) for README blocks, removed when t ends.
func readmeTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(".", "readmetest-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// goOffline is the go command with args, run so that it downloads nothing:
// no module proxy, go.mod read only, no workspace.
func goOffline(args ...string) *exec.Cmd {
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOWORK=off")
	return cmd
}
