// cxbackup-fetch copies recordings' media objects from S3 into a backup folder for `cxbackup download`.
//
// The Python worker lists the recordings, chooses the files and their paths, and keeps the lock, the
// checkpoint, the search index, the progress and the exit code. This program does the data path, one
// recording at a time per request, many recordings at once:
//
//   - for each media file: when the folder already has it (`have` >= 0), a HEAD: the same size, or the
//     object gone from S3, keeps it; else a GET into a hidden temporary file next to the final name
//     (".<name>.part-<8 hex>", the name the worker removes when a killed run leaves one), checking the
//     body while it is written: its size against Content-Length, and its checksum against the one S3
//     stores for the object (CRC32C, CRC32 or CRC64NVME of the whole object, asked for with
//     x-amz-checksum-mode) or else the ETag when it is an MD5; then fsync and rename;
//   - then, unless nothing was downloaded and the metadata file is already there, the recording's
//     metadata file the same way, and one fsync of the folder, which makes every rename in it durable.
//
// A failed attempt leaves no file behind. Throttling, server errors, connection errors, a body that
// stalls, is cut short or does not match its checksum are retried with backoff (equal jitter, as the
// worker's); what cannot succeed on retry (403, 404, the codes in -final-codes) is not.
//
// Standard input: one JSON request per line; standard output: one JSON answer per line, in the order
// recordings finish. When standard input ends, the program finishes the requests already read, answers
// them and exits; when the worker is gone (its end of the pipe closed) it exits at once, and the
// worker's next run removes the temporary files it left. Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN) and are never written anywhere. Extra CAs: AWS_CA_BUNDLE or SSL_CERT_FILE.
//
// The contract with the worker (requests, answers, the protocol version, the flags, the environment, the
// temporary names) is contract/fetch.schema.json, with valid and invalid examples in contract/examples;
// contract_test.go holds this program to it, the worker's tests/unit/backup/test_fetch_contract.py the
// worker. The code by concern: protocol.go (messages, the request loop), transfer.go (a recording, its
// files, retries, one download), check.go (checksums), s3.go (the S3 client and its errors), files.go and
// tempname.go (writing into the folder), env.go (the environment), watchdog.go (stalled bodies).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func init() {
	runtime.LockOSThread() // main runs on the process's first thread, which never exits (see main)
}

func main() {
	// Die with the worker: a worker killed mid-run must not leave this program writing into the target
	// while the next run starts. The signal is sent when the parent's thread that started us exits; the
	// worker starts it from its main thread.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	var o options
	var final string
	var version bool
	defineFlags(flag.CommandLine, &o, &final, &version)
	flag.Parse()
	if version {
		os.Stdout.Write(versionLine())
		return
	}
	if o.inFlight < 1 || o.retries < 0 {
		fatal("-in-flight must be at least 1 and -retries at least 0")
	}
	o.finalCodes = map[string]bool{}
	for _, c := range strings.Split(final, ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.finalCodes[c] = true
		}
	}
	f, err := newFetcher(o)
	if err != nil {
		fatal(err.Error())
	}
	f.serve(os.Stdin, os.Stdout)
}

// defineFlags declares the program's flags (contract: $defs/arguments) on fs.
func defineFlags(fs *flag.FlagSet, o *options, final *string, version *bool) {
	fs.StringVar(&o.endpoint, "endpoint", "", "S3 endpoint URL (path-style requests); empty: AWS, virtual-hosted")
	fs.StringVar(&o.proxy, "proxy", "", "HTTP proxy URL")
	fs.IntVar(&o.inFlight, "in-flight", 64, "S3 requests in flight at most")
	fs.IntVar(&o.retries, "retries", 6, "retries of a file after its first attempt")
	fs.DurationVar(&o.baseDelay, "base-delay", 250*time.Millisecond, "first retry delay (doubles, with jitter)")
	fs.DurationVar(&o.maxDelay, "max-delay", 20*time.Second, "longest retry delay")
	fs.DurationVar(&o.stall, "stall", 120*time.Second, "cancel and retry a download that gets no data for this long")
	fs.StringVar(final, "final-codes", "", "comma-separated S3 error codes not worth a retry")
	fs.BoolVar(version, "version", false, "print the protocol version and exit")
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "cxbackup-fetch:", msg)
	os.Exit(2)
}
