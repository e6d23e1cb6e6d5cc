package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       request
		err        string
	}{
		{"whole", `{"id":3,"dir":"/b","files":[{"bucket":"m","key":"k","region":"r","name":"n","have":-1}],"metadata":{"name":"r.json","data":"{}","present":true}}`,
			request{ID: 3, Dir: "/b", Files: []fileRequest{{"m", "k", "r", "n", -1}}, Metadata: metadataRequest{"r.json", "{}", true}}, ""},
		{"fields left out are zero", `{"id":1,"dir":"/b"}`, request{ID: 1, Dir: "/b"}, ""},
		{"unknown fields are ignored", `{"id":1,"dir":"/b","priority":9}`, request{ID: 1, Dir: "/b"}, ""},
		{"not JSON", `{"id":1,`, request{}, "unexpected end of JSON input"},
		{"a field of the wrong type", `{"id":1,"files":[{"have":"-1"}]}`, request{}, "cannot unmarshal string"},
		{"not an object", `[1]`, request{}, "cannot unmarshal array"},
	} {
		got, err := decodeRequest([]byte(tc.line))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestVersionLine(t *testing.T) {
	if got := string(versionLine()); got != fmt.Sprintf("{\"protocol\":%d}\n", protocol) {
		t.Errorf("versionLine() = %q", got)
	}
}

// serve answers every request read, one JSON line each, and returns when its input ends.
func TestServeAnswersEveryRequestThenReturns(t *testing.T) {
	dir := t.TempDir()
	var in bytes.Buffer
	for i := 1; i <= 20; i++ {
		r := request{ID: int64(i), Dir: filepath.Join(dir, fmt.Sprint(i)), Metadata: metadataRequest{Name: "r.json", Data: "{}"}}
		if i%4 == 0 {
			r.Dir = "relative"
		}
		line, _ := json.Marshal(r)
		in.Write(append(line, '\n'))
	}
	var out bytes.Buffer
	offlineFetcher().serve(&in, &out)
	var ids []int
	scanner := bufio.NewScanner(&out)
	for scanner.Scan() {
		var a answer
		dec := json.NewDecoder(bytes.NewReader(scanner.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("answer %s: %v", scanner.Bytes(), err)
		}
		ids = append(ids, int(a.ID))
		if failed := a.ID%4 == 0; failed != (a.Error != nil) || (!failed && a.Files != 1) {
			t.Errorf("answer %s", scanner.Bytes())
		}
	}
	sort.Ints(ids)
	if fmt.Sprint(ids) != fmt.Sprint([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}) {
		t.Errorf("answered %v", ids)
	}
	if _, err := os.Stat(filepath.Join(dir, "7", "r.json")); err != nil {
		t.Error(err)
	}
}
