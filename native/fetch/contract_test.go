package main

// The program against its contract with the worker, contract/fetch.schema.json (the worker's side:
// tests/unit/backup/test_fetch_contract.py). Each test names what would have drifted.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const (
	schemaFile = "contract/fetch.schema.json"
	examples   = "contract/examples"
)

type contract struct {
	id       string
	defs     map[string]map[string]any // $defs, as plain JSON
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	compiled map[string]*jsonschema.Schema
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		return nil, err
	}
	var plain struct {
		ID   string                    `json:"$id"`
		Defs map[string]map[string]any `json:"$defs"`
	}
	if err := json.Unmarshal(raw, &plain); err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(plain.ID, doc); err != nil {
		return nil, err
	}
	return &contract{id: plain.ID, defs: plain.Defs, compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
})

func theContract(t *testing.T) *contract {
	t.Helper()
	c, err := loadContract()
	if err != nil {
		t.Fatalf("reading the contract %s: %v", schemaFile, err)
	}
	return c
}

// schema: the compiled $defs/<name>.
func (c *contract) schema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.compiled[name]; ok {
		return s
	}
	if _, ok := c.defs[name]; !ok {
		t.Fatalf("the contract has no $defs/%s", name)
	}
	s, err := c.compiler.Compile(c.id + "#/$defs/" + name)
	if err != nil {
		t.Fatalf("compiling $defs/%s: %v", name, err)
	}
	c.compiled[name] = s
	return s
}

// validate checks a JSON document (bytes) or a Go value (marshalled as the program does) against $defs/<name>.
func (c *contract) validate(t *testing.T, name string, v any) error {
	t.Helper()
	raw, ok := v.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			t.Fatalf("marshalling %#v: %v", v, err)
		}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s is not JSON: %v", raw, err)
	}
	return c.schema(t, name).Validate(doc)
}

// properties and required of an object definition; enum of an enum definition.
func (c *contract) properties(name string) []string {
	props, _ := c.defs[name]["properties"].(map[string]any)
	return sortedKeys(props)
}

func (c *contract) required(name string) []string {
	var out []string
	for _, r := range c.defs[name]["required"].([]any) {
		out = append(out, r.(string))
	}
	sort.Strings(out)
	return out
}

func (c *contract) enum(name string) []string {
	var out []string
	for _, e := range c.defs[name]["enum"].([]any) {
		out = append(out, e.(string))
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type example struct {
	Name    string          `json:"name"`
	Message json.RawMessage `json:"message"`
}

// loadExamples: contract/examples/<definition>.json, each with valid and invalid instances.
func loadExamples(t *testing.T) map[string]struct{ Valid, Invalid []example } {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(examples, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in %s (%v)", examples, err)
	}
	out := map[string]struct{ Valid, Invalid []example }{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var set struct{ Valid, Invalid []example }
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&set); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out[strings.TrimSuffix(filepath.Base(file), ".json")] = set
	}
	return out
}

func TestContractExamplesAreValidAndInvalidAsLabelled(t *testing.T) {
	c := theContract(t)
	sets := loadExamples(t)
	for _, name := range []string{"request", "answer", "versionAnswer", "tempName", "arguments", "environment"} {
		if len(sets[name].Valid) == 0 || len(sets[name].Invalid) == 0 {
			t.Errorf("%s/%s.json needs valid and invalid examples", examples, name)
		}
	}
	for def, set := range sets {
		for _, ex := range set.Valid {
			t.Run(def+"/valid/"+ex.Name, func(t *testing.T) {
				if err := c.validate(t, def, []byte(ex.Message)); err != nil {
					t.Errorf("refused: %v", err)
				}
			})
		}
		for _, ex := range set.Invalid {
			t.Run(def+"/invalid/"+ex.Name, func(t *testing.T) {
				if err := c.validate(t, def, []byte(ex.Message)); err == nil {
					t.Errorf("accepted: %s", ex.Message)
				}
			})
		}
	}
}

func TestProtocolVersionIsTheContracts(t *testing.T) {
	c := theContract(t)
	want, ok := c.defs["protocol"]["const"].(float64)
	if !ok || int(want) != protocol {
		t.Errorf("protocol = %d, the contract's $defs/protocol is %v", protocol, c.defs["protocol"]["const"])
	}
	line := versionLine()
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Errorf("-version prints %q, not one line", line)
	}
	if err := c.validate(t, "versionAnswer", line); err != nil {
		t.Errorf("-version prints %s: %v", line, err)
	}
}

// jsonFields: the JSON names of a struct's fields and whether each is omitted when empty.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !t.Field(i).IsExported() {
			continue
		}
		if name == "" {
			name = t.Field(i).Name
		}
		out[name] = slices.Contains(strings.Split(opts, ","), "omitempty")
	}
	return out
}

// Every message type has exactly the contract's fields. What the program reads (requests) must know
// every field the worker may send; what it writes (answers) must always write the required ones
// (no omitempty) and never one the contract does not name.
func TestMessageTypesHaveTheContractsFields(t *testing.T) {
	c := theContract(t)
	for _, tc := range []struct {
		def    string
		typ    any
		writes bool
	}{
		{"request", request{}, false},
		{"fileRequest", fileRequest{}, false},
		{"metadataRequest", metadataRequest{}, false},
		{"answer", answer{}, true},
		{"failure", failure{}, true},
		{"versionAnswer", versionAnswer{}, true},
	} {
		t.Run(tc.def, func(t *testing.T) {
			fields := jsonFields(reflect.TypeOf(tc.typ))
			if got, want := sortedKeys(fields), c.properties(tc.def); !slices.Equal(got, want) {
				t.Errorf("%T has fields %v, $defs/%s has %v", tc.typ, got, tc.def, want)
			}
			if !tc.writes {
				return
			}
			var always []string
			for name, omitted := range fields {
				if !omitted {
					always = append(always, name)
				}
			}
			sort.Strings(always)
			if want := c.required(tc.def); !slices.Equal(always, want) {
				t.Errorf("%T always writes %v, $defs/%s requires %v", tc.typ, always, tc.def, want)
			}
		})
	}
}

// The valid requests decode into the Go types with no field left over, and nothing is lost: encoding
// what was decoded gives the same document.
func TestValidRequestsDecodeIntoTheGoTypesWhole(t *testing.T) {
	for _, ex := range loadExamples(t)["request"].Valid {
		t.Run(ex.Name, func(t *testing.T) {
			dec := json.NewDecoder(bytes.NewReader(ex.Message))
			dec.DisallowUnknownFields()
			var r request
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("strict decoding: %v", err)
			}
			lenient, err := decodeRequest(ex.Message)
			if err != nil || !reflect.DeepEqual(lenient, r) {
				t.Errorf("decodeRequest gives %+v, %v; want %+v", lenient, err, r)
			}
			again, _ := json.Marshal(r)
			var before, after any
			json.Unmarshal(ex.Message, &before)
			json.Unmarshal(again, &after)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("decoded and encoded again:\n %s\nwas\n %s", again, ex.Message)
			}
		})
	}
}

// A name the program accepts as a file name is one the contract calls a fileName, and the reverse.
func TestFileNamesTheProgramRefusesAreTheContracts(t *testing.T) {
	c := theContract(t)
	for _, name := range []string{"", ".", "..", "...", "a/b", "/", "a\x00b", "a", ".a", "..a", "a..", "ab12.mp3.bin", "é ü", `a\b`} {
		byProgram := checkName(name) == nil
		byContract := c.validate(t, "fileName", name) == nil
		if byProgram != byContract {
			t.Errorf("file name %q: the program accepts it: %v, the contract: %v", name, byProgram, byContract)
		}
	}
}

func TestTempNamesFollowTheContract(t *testing.T) {
	c := theContract(t)
	pattern := regexp.MustCompile(c.defs["tempName"]["pattern"].(string))
	for _, name := range []string{"a", "ab12.mp3.bin", "CALL-UUID-1.json", ".x", "é ü.mp4", strings.Repeat("n", 175)} {
		temp := tempName(name)
		if err := c.validate(t, "tempName", temp); err != nil || !pattern.MatchString(temp) {
			t.Errorf("tempName(%q) = %q: %v", name, temp, err)
		}
		if !strings.HasPrefix(temp, "."+name+".part-") {
			t.Errorf("tempName(%q) = %q does not start with the final name", name, temp)
		}
	}
}

func TestFlagsAreTheContracts(t *testing.T) {
	c := theContract(t)
	fs := flag.NewFlagSet("cxbackup-fetch", flag.ContinueOnError)
	var o options
	var final string
	var version bool
	defineFlags(fs, &o, &final, &version)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	if want := c.properties("arguments"); !slices.Equal(names, want) {
		t.Errorf("the program's flags are %v, $defs/arguments has %v", names, want)
	}
	// what the contract's valid arguments say, the program parses
	for _, ex := range loadExamples(t)["arguments"].Valid {
		var args map[string]string
		json.Unmarshal(ex.Message, &args)
		var argv []string
		for _, k := range sortedKeys(args) {
			argv = append(argv, "-"+k+"="+args[k])
		}
		fs := flag.NewFlagSet("cxbackup-fetch", flag.ContinueOnError)
		fs.SetOutput(new(bytes.Buffer))
		defineFlags(fs, &o, &final, &version)
		if err := fs.Parse(argv); err != nil {
			t.Errorf("%s: %v does not parse: %v", ex.Name, argv, err)
		}
	}
}

// packageConsts: the string constants of the program's sources (not its tests), and its parsed files.
func packageConsts(t *testing.T) (map[string]string, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	sources, _ := filepath.Glob("*.go")
	consts := map[string]string{}
	var files []*ast.File
	for _, src := range sources {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, src, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, file)
		for _, decl := range file.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							consts[id.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	return consts, files
}

// Every environment variable the program looks up is one the contract lets the worker pass, and the
// ones the contract requires are read. A lookup must name a constant or a literal (so this test sees
// it); reading the whole environment is refused.
func TestEnvironmentTheProgramReadsIsTheContracts(t *testing.T) {
	c := theContract(t)
	consts, files := packageConsts(t)
	read := map[string]bool{}
	for _, file := range files {
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok || (pkg.Name != "os" && pkg.Name != "syscall") {
				return true
			}
			switch sel.Sel.Name {
			case "Environ":
				t.Errorf("%s.Environ() reads the whole environment: look up names of $defs/environment", pkg.Name)
			case "Getenv", "LookupEnv":
				switch arg := call.Args[0].(type) {
				case *ast.Ident:
					if v, ok := consts[arg.Name]; ok {
						read[v] = true
					} else {
						t.Errorf("%s.%s(%s): not a string constant", pkg.Name, sel.Sel.Name, arg.Name)
					}
				case *ast.BasicLit:
					v, _ := strconv.Unquote(arg.Value)
					read[v] = true
				default:
					t.Errorf("%s.%s with a computed name", pkg.Name, sel.Sel.Name)
				}
			}
			return true
		})
	}
	allowed := c.properties("environment")
	for name := range read {
		if !slices.Contains(allowed, name) {
			t.Errorf("the program reads %s, which $defs/environment does not list (the worker does not pass it)", name)
		}
	}
	for _, name := range c.required("environment") {
		if !read[name] {
			t.Errorf("$defs/environment requires %s, which the program never reads", name)
		}
	}
}

// The names of checks and failure kinds the program writes (its check* and kind* constants) are the
// contract's enums.
func TestCheckNamesAndFailureKindsAreTheContracts(t *testing.T) {
	c := theContract(t)
	consts, _ := packageConsts(t)
	for _, tc := range []struct{ prefix, def string }{{"check", "checkName"}, {"kind", "failureKind"}} {
		var got []string
		for name, value := range consts {
			if strings.HasPrefix(name, tc.prefix) {
				got = append(got, value)
			}
		}
		sort.Strings(got)
		if want := c.enum(tc.def); !slices.Equal(got, want) {
			t.Errorf("the program's %s* constants are %v, $defs/%s is %v", tc.prefix, got, tc.def, want)
		}
	}
	for check := range checkNames {
		if err := c.validate(t, "checkName", check); err != nil {
			t.Errorf("checkNames has %q: %v", check, err)
		}
	}
}

// Answers the program gives, built by its own code paths, follow the contract.
func TestAnswersTheProgramGivesFollowTheContract(t *testing.T) {
	c := theContract(t)
	dir := t.TempDir()
	f := offlineFetcher()
	meta := metadataRequest{Name: "r.json", Data: `{"id":"r"}`}
	answers := map[string]answer{
		"relative folder":  f.recording(context.Background(), request{ID: 1, Dir: "rel", Metadata: meta}),
		"metadata written": f.recording(context.Background(), request{ID: 2, Dir: dir, Metadata: meta}),
		"skipped": f.recording(context.Background(), request{ID: 3, Dir: dir,
			Metadata: metadataRequest{Name: "r.json", Present: true}}),
		"unsafe media name": f.recording(context.Background(), request{ID: 4, Dir: dir, Metadata: meta,
			Files: []fileRequest{{Bucket: "b", Key: "k", Name: "../x", Have: -1}}}),
		"unsafe metadata name": f.recording(context.Background(), request{ID: 5, Dir: dir,
			Metadata: metadataRequest{Name: ".."}}),
		"everything": {ID: 6, Files: 6, Bytes: 600, Skipped: true, Notes: []string{"n"}, Attempts: 3,
			Checks: map[string]int{checkCRC32C: 1, checkCRC32: 1, checkCRC64NVME: 1, checkMD5: 1, checkSize: 1}},
	}
	for i, tc := range s3FailureCases() {
		answers["s3Failure "+tc.name] = answer{ID: int64(100 + i), Error: s3Failure(tc.err, "s3://b/k")}
	}
	for name, a := range answers {
		if err := c.validate(t, "answer", a); err != nil {
			raw, _ := json.Marshal(a)
			t.Errorf("%s: %s: %v", name, raw, err)
		}
	}
	if a := answers["metadata written"]; a.Error != nil || a.Files != 1 {
		t.Errorf("metadata written: %+v", a)
	}
	if a := answers["skipped"]; !a.Skipped {
		t.Errorf("skipped: %+v", a)
	}
}
