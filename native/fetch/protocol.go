package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"
)

// The messages exchanged with the worker; contract/fetch.schema.json is their definition, which
// contract_test.go holds these types to.

// Protocol version ($defs/protocol): the worker refuses a binary that answers another.
const protocol = 1

// versionAnswer is what -version prints ($defs/versionAnswer).
type versionAnswer struct {
	Protocol int `json:"protocol"`
}

// versionLine: the -version output, one line.
func versionLine() []byte {
	b, _ := json.Marshal(versionAnswer{Protocol: protocol})
	return append(b, '\n')
}

type fileRequest struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Region string `json:"region"`
	Name   string `json:"name"`
	Have   int64  `json:"have"` // size of the file already in the folder, -1 when absent
}

type metadataRequest struct {
	Name    string `json:"name"`
	Data    string `json:"data"`
	Present bool   `json:"present"`
}

type request struct {
	ID       int64           `json:"id"`
	Dir      string          `json:"dir"`
	Files    []fileRequest   `json:"files"`
	Metadata metadataRequest `json:"metadata"`
}

// Kinds of failure ($defs/failureKind).
const (
	kindS3        = "s3"
	kindNetwork   = "network"
	kindTLS       = "tls"
	kindIntegrity = "integrity"
	kindTarget    = "target"
)

type failure struct {
	Kind    string `json:"kind"` // s3, network, tls, integrity, target
	Object  string `json:"object,omitempty"`
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

func (f *failure) Error() string { return f.Message }

type answer struct {
	ID       int64          `json:"id"`
	Files    int            `json:"files"` // files written, the metadata file included
	Bytes    int64          `json:"bytes"`
	Skipped  bool           `json:"skipped,omitempty"`
	Checks   map[string]int `json:"checks,omitempty"` // media files written, by the check that passed
	Notes    []string       `json:"notes,omitempty"`
	Attempts int            `json:"attempts,omitempty"` // attempts beyond the first, all files
	Error    *failure       `json:"error,omitempty"`
}

// decodeRequest parses one line of standard input.
func decodeRequest(line []byte) (request, error) {
	var r request
	err := json.Unmarshal(line, &r)
	return r, err
}

// serve reads requests from in until it ends and writes each answer to out when its recording is over.
func (f *fetcher) serve(in io.Reader, out io.Writer) {
	answers := make(chan answer, 64)
	done := make(chan struct{})
	go func() {
		w := bufio.NewWriterSize(out, 64<<10)
		enc := json.NewEncoder(w)
		for a := range answers {
			if err := enc.Encode(a); err != nil {
				os.Exit(3) // the worker is gone
			}
			if len(answers) == 0 {
				if err := w.Flush(); err != nil {
					os.Exit(3)
				}
			}
		}
		w.Flush()
		close(done)
	}()
	var wg sync.WaitGroup
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for scanner.Scan() {
		r, err := decodeRequest(scanner.Bytes())
		if err != nil {
			fatal("a request is not valid JSON: " + err.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- f.recording(context.Background(), r)
		}()
	}
	if err := scanner.Err(); err != nil {
		fatal("reading requests: " + err.Error())
	}
	wg.Wait()
	close(answers)
	<-done
}
