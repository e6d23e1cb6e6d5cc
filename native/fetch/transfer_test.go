package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// offlineFetcher: a fetcher for what needs no S3 (requests refused before any download, metadata only).
func offlineFetcher() *fetcher {
	return &fetcher{
		opts:    options{inFlight: 1, retries: 2, baseDelay: time.Millisecond, maxDelay: 2 * time.Millisecond, stall: time.Second, finalCodes: map[string]bool{}},
		slots:   make(chan struct{}, 1),
		clients: map[string]*s3.Client{},
	}
}

func TestRetryGivesUpAsConfigured(t *testing.T) {
	f := offlineFetcher() // 2 retries, millisecond delays
	for _, tc := range []struct {
		name     string
		failures []*failure // returned by successive attempts; nil after them
		want     *failure
		retries  int
		attempts int
	}{
		{"first attempt succeeds", nil, nil, 0, 1},
		{"network failure then success", []*failure{{Kind: kindNetwork}}, nil, 1, 2},
		{"retries spent", []*failure{{Kind: kindNetwork}, {Kind: kindIntegrity}, {Kind: kindNetwork, Message: "last"}},
			&failure{Kind: kindNetwork, Message: "last"}, 2, 3},
		{"a final failure is not retried", []*failure{{Kind: kindS3, Status: 403}}, &failure{Kind: kindS3, Status: 403}, 0, 1},
		{"nor a target failure", []*failure{{Kind: kindTarget}}, &failure{Kind: kindTarget}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attempts, retries := 0, 0
			err := f.retry(context.Background(), &retries, func() *failure {
				attempts++
				if attempts <= len(tc.failures) {
					return tc.failures[attempts-1]
				}
				return nil
			})
			if fmt.Sprint(err) != fmt.Sprint(tc.want) || retries != tc.retries || attempts != tc.attempts {
				t.Errorf("got %v after %d attempts, %d retries; want %v, %d, %d", err, attempts, retries, tc.want, tc.attempts, tc.retries)
			}
		})
	}
}

func TestFillReadsUntilFullOrTheEnd(t *testing.T) {
	data := []byte("0123456789")
	for _, tc := range []struct {
		name string
		r    io.Reader
		size int
		n    int
		err  error
	}{
		{"full buffer from one-byte reads", iotest.OneByteReader(bytes.NewReader(data)), 4, 4, nil},
		{"the end, short", bytes.NewReader(data), 16, 10, io.EOF},
		{"a failure keeps what was read", iotest.TimeoutReader(iotest.HalfReader(bytes.NewReader(data))), 16, 8, iotest.ErrTimeout},
	} {
		n, err := fill(tc.r, make([]byte, tc.size))
		if n != tc.n || !errors.Is(err, tc.err) {
			t.Errorf("%s: fill = %d, %v; want %d, %v", tc.name, n, err, tc.n, tc.err)
		}
	}
}

func TestRecordingsRefusedBeforeAnyDownload(t *testing.T) {
	dir := t.TempDir()
	f := offlineFetcher()
	meta := metadataRequest{Name: "r.json", Data: "{}"}
	for _, tc := range []struct {
		name string
		r    request
		msg  string
	}{
		{"relative folder", request{ID: 1, Dir: "backup/x", Metadata: meta}, `folder "backup/x" is not an absolute path`},
		{"media name with a slash", request{ID: 2, Dir: dir, Metadata: meta, Files: []fileRequest{{Name: "a/b", Have: -1}}}, `refusing unsafe file name "a/b"`},
		{"media name dot-dot", request{ID: 3, Dir: dir, Metadata: meta, Files: []fileRequest{{Name: "..", Have: -1}}}, `refusing unsafe file name ".."`},
		{"empty metadata name", request{ID: 4, Dir: dir, Metadata: metadataRequest{}}, `refusing unsafe file name ""`},
	} {
		a := f.recording(context.Background(), tc.r)
		if a.ID != tc.r.ID || a.Error == nil || a.Error.Kind != kindTarget || a.Error.Message != tc.msg || a.Files != 0 {
			t.Errorf("%s: %+v (error %+v)", tc.name, a, a.Error)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused requests left %v", entries)
	}
}

// fakeS3 serves objects path-style (/bucket/key) as S3 does, with scripted failures.
type fakeS3 struct {
	mu       sync.Mutex
	objects  map[string]fakeObject
	requests map[string]int // "GET /b/k" -> count
}

type fakeObject struct {
	body     []byte
	crc32c   string // x-amz-checksum-crc32c; "" none
	etag     string // "" the body's MD5
	status   int    // an error response instead of the object
	code     string // its S3 error code
	failures int    // first GETs that get a 503 SlowDown
}

func (s *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.Method+" "+r.URL.Path]++
	n := s.requests[r.Method+" "+r.URL.Path]
	o, ok := s.objects[strings.TrimPrefix(r.URL.Path, "/")]
	s.mu.Unlock()
	fail := func(status int, code string) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s happened</Message></Error>", code, code)
		}
	}
	switch {
	case !ok:
		fail(404, "NoSuchKey")
		return
	case o.status != 0:
		fail(o.status, o.code)
		return
	case r.Method == http.MethodGet && n <= o.failures:
		fail(503, "SlowDown")
		return
	}
	etag := o.etag
	if etag == "" {
		sum := md5.Sum(o.body)
		etag = hex.EncodeToString(sum[:])
	}
	w.Header().Set("ETag", `"`+etag+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(o.body)))
	if o.crc32c != "" {
		w.Header().Set("x-amz-checksum-crc32c", o.crc32c)
	}
	if r.Method == http.MethodGet {
		w.Write(o.body)
	}
}

func crc32cOf(b []byte) string {
	sum := binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return base64.StdEncoding.EncodeToString(sum)
}

func TestRecordingsAgainstAFakeS3(t *testing.T) {
	audio, video := []byte(strings.Repeat("audio ", 50000)), []byte("video bytes")
	for _, tc := range []struct {
		name    string
		objects map[string]fakeObject
		have    map[string]int64 // name -> size already in the folder
		want    answer           // ID and Notes not compared
		kept    []string         // files left as they were
		gets    int              // GETs in all
	}{
		{"MD5 and CRC32C checked", map[string]fakeObject{"m/a": {body: audio}, "m/v": {body: video, crc32c: crc32cOf(video)}}, nil,
			answer{Files: 3, Bytes: int64(len(audio) + len(video) + 2), Checks: map[string]int{checkMD5: 1, checkCRC32C: 1}}, nil, 2},
		{"no checksum: the size alone", map[string]fakeObject{"m/a": {body: audio, etag: "abc-2"}, "m/v": {body: video, etag: "x"}}, nil,
			answer{Files: 3, Bytes: int64(len(audio) + len(video) + 2), Checks: map[string]int{checkSize: 2}}, nil, 2},
		{"throttled, then served", map[string]fakeObject{"m/a": {body: audio, failures: 2}, "m/v": {body: video}}, nil,
			answer{Files: 3, Bytes: int64(len(audio) + len(video) + 2), Checks: map[string]int{checkMD5: 2}, Attempts: 2}, nil, 4},
		{"all there: skipped", map[string]fakeObject{"m/a": {body: audio}, "m/v": {body: video}},
			map[string]int64{"a.bin": int64(len(audio)), "v.bin": int64(len(video)), "r.json": 2},
			answer{Skipped: true, Checks: map[string]int{}}, []string{"a.bin", "v.bin", "r.json"}, 0},
		{"one of another size: downloaded again", map[string]fakeObject{"m/a": {body: audio}, "m/v": {body: video}},
			map[string]int64{"a.bin": int64(len(audio)), "v.bin": 3, "r.json": 2},
			answer{Files: 2, Bytes: int64(len(video) + 2), Checks: map[string]int{checkMD5: 1}}, []string{"a.bin"}, 1},
		{"gone from S3 but here: kept", map[string]fakeObject{"m/v": {body: video}},
			map[string]int64{"a.bin": 5, "v.bin": int64(len(video)), "r.json": 2},
			answer{Skipped: true, Checks: map[string]int{}}, []string{"a.bin", "v.bin", "r.json"}, 0},
		{"missing: not retried", map[string]fakeObject{"m/v": {body: video}}, nil,
			answer{Error: &failure{Kind: kindS3, Object: "s3://media/m/a", Status: 404, Code: "NoSuchKey", Message: "NoSuchKey happened"}}, nil, 2},
		{"denied: not retried", map[string]fakeObject{"m/a": {status: 403, code: "AccessDenied"}, "m/v": {body: video}}, nil,
			answer{Error: &failure{Kind: kindS3, Object: "s3://media/m/a", Status: 403, Code: "AccessDenied", Message: "AccessDenied happened"}}, nil, 2},
		{"MD5 mismatch: retried, then given up", map[string]fakeObject{"m/a": {body: audio, etag: strings.Repeat("0", 32)}, "m/v": {body: video}}, nil,
			answer{Attempts: 2, Error: &failure{Kind: kindIntegrity, Object: "s3://media/m/a", Message: "s3://media/m/a: the MD5 (ETag) differs from the one S3 gave"}}, nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s3 := &fakeS3{objects: map[string]fakeObject{}, requests: map[string]int{}}
			for k, o := range tc.objects {
				s3.objects["media/"+k] = o
			}
			srv := httptest.NewServer(s3)
			defer srv.Close()
			t.Setenv(envAccessKey, "AKIDEXAMPLE")
			t.Setenv(envSecretKey, "secret")
			t.Setenv(envCABundle, "")
			f, err := newFetcher(options{endpoint: srv.URL, inFlight: 4, retries: 2, baseDelay: time.Millisecond,
				maxDelay: 2 * time.Millisecond, stall: 5 * time.Second, finalCodes: map[string]bool{}})
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "rec")
			r := request{ID: 9, Dir: dir, Metadata: metadataRequest{Name: "r.json", Data: "{}"}}
			for _, name := range []string{"a", "v"} {
				have, ok := tc.have[name+".bin"]
				if !ok {
					have = -1
				}
				r.Files = append(r.Files, fileRequest{Bucket: "media", Key: "m/" + name, Region: "eu-west-1", Name: name + ".bin", Have: have})
			}
			if tc.have != nil {
				os.MkdirAll(dir, 0o700)
				for name, size := range tc.have {
					os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte("o"), int(size)), 0o600)
				}
				r.Metadata.Present = true
			}
			a := f.recording(context.Background(), r)
			got := fmt.Sprintf("%d %d %v %v %d %+v", a.Files, a.Bytes, a.Skipped, a.Checks, a.Attempts, a.Error)
			if tc.want.Error != nil {
				got = fmt.Sprintf("%d %+v", a.Attempts, a.Error)
			}
			want := fmt.Sprintf("%d %d %v %v %d %+v", tc.want.Files, tc.want.Bytes, tc.want.Skipped, tc.want.Checks, tc.want.Attempts, tc.want.Error)
			if tc.want.Error != nil {
				want = fmt.Sprintf("%d %+v", tc.want.Attempts, tc.want.Error)
			}
			if got != want {
				t.Errorf("answer %s\n  want %s", got, want)
			}
			gets := 0
			for k, n := range s3.requests {
				if strings.HasPrefix(k, "GET ") {
					gets += n
				}
			}
			if gets != tc.gets {
				t.Errorf("%d GETs, want %d (%v)", gets, tc.gets, s3.requests)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.Contains(e.Name(), ".part-") {
					t.Errorf("a temporary file is left: %s", e.Name())
				}
				info, _ := e.Info()
				if info.Mode().Perm() != 0o600 {
					t.Errorf("%s is %v, not owner-only", e.Name(), info.Mode().Perm())
				}
				kept := false
				for _, k := range tc.kept {
					kept = kept || k == e.Name()
				}
				body, _ := os.ReadFile(filepath.Join(dir, e.Name()))
				want := map[string][]byte{"a.bin": audio, "v.bin": video, "r.json": []byte("{}")}[e.Name()]
				if !kept && !bytes.Equal(body, want) {
					t.Errorf("%s has %d bytes, not the object's %d", e.Name(), len(body), len(want))
				}
			}
		})
	}
}
