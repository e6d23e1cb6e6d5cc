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
package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Protocol version: the worker refuses a binary that answers another.
const protocol = 1

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

type options struct {
	endpoint   string
	proxy      string
	inFlight   int
	retries    int
	baseDelay  time.Duration
	maxDelay   time.Duration
	stall      time.Duration
	finalCodes map[string]bool
}

type fetcher struct {
	opts    options
	slots   chan struct{} // requests to S3 in flight
	creds   aws.CredentialsProvider
	http    *awshttp.BuildableClient
	mu      sync.Mutex
	clients map[string]*s3.Client
	bufs    sync.Pool
}

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
	flag.StringVar(&o.endpoint, "endpoint", "", "S3 endpoint URL (path-style requests); empty: AWS, virtual-hosted")
	flag.StringVar(&o.proxy, "proxy", "", "HTTP proxy URL")
	flag.IntVar(&o.inFlight, "in-flight", 64, "S3 requests in flight at most")
	flag.IntVar(&o.retries, "retries", 6, "retries of a file after its first attempt")
	flag.DurationVar(&o.baseDelay, "base-delay", 250*time.Millisecond, "first retry delay (doubles, with jitter)")
	flag.DurationVar(&o.maxDelay, "max-delay", 20*time.Second, "longest retry delay")
	flag.DurationVar(&o.stall, "stall", 120*time.Second, "cancel and retry a download that gets no data for this long")
	flag.StringVar(&final, "final-codes", "", "comma-separated S3 error codes not worth a retry")
	flag.BoolVar(&version, "version", false, "print the protocol version and exit")
	flag.Parse()
	if version {
		fmt.Printf("{\"protocol\":%d}\n", protocol)
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

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "cxbackup-fetch:", msg)
	os.Exit(2)
}

func newFetcher(o options) (*fetcher, error) {
	key, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if key == "" || secret == "" {
		return nil, errors.New("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
	}
	roots, err := trustStore()
	if err != nil {
		return nil, err
	}
	var proxy func(*http.Request) (*url.URL, error)
	if o.proxy != "" {
		u, err := url.Parse(o.proxy)
		if err != nil {
			return nil, fmt.Errorf("-proxy %q: %v", o.proxy, err)
		}
		proxy = http.ProxyURL(u)
	}
	client := awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = 10 * time.Second
	}).WithTransportOptions(func(t *http.Transport) {
		t.Proxy = proxy
		t.MaxIdleConns = 2 * o.inFlight
		t.MaxIdleConnsPerHost = 2 * o.inFlight
		t.IdleConnTimeout = 60 * time.Second
		t.ResponseHeaderTimeout = o.stall
		if roots != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		}
	})
	f := &fetcher{
		opts:    o,
		slots:   make(chan struct{}, o.inFlight),
		creds:   credentials.NewStaticCredentialsProvider(key, secret, os.Getenv("AWS_SESSION_TOKEN")),
		http:    client,
		clients: map[string]*s3.Client{},
	}
	f.bufs.New = func() any { b := make([]byte, 256<<10); return &b }
	return f, nil
}

// trustStore: the system's roots plus the bundle in AWS_CA_BUNDLE (Go reads SSL_CERT_FILE itself).
func trustStore() (*x509.CertPool, error) {
	bundle := os.Getenv("AWS_CA_BUNDLE")
	if bundle == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(bundle)
	if err != nil {
		return nil, fmt.Errorf("AWS_CA_BUNDLE %s: %v", bundle, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("AWS_CA_BUNDLE %s: no PEM certificate in it", bundle)
	}
	return pool, nil
}

func (f *fetcher) client(region string) *s3.Client {
	if region == "" {
		region = "us-east-1"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[region]; ok {
		return c
	}
	c := s3.New(s3.Options{
		Region:                     region,
		Credentials:                f.creds,
		HTTPClient:                 f.http,
		Retryer:                    aws.NopRetryer{}, // one retry policy for every download: ours
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		UsePathStyle:               f.opts.endpoint != "",
		BaseEndpoint: func() *string {
			if f.opts.endpoint == "" {
				return nil
			}
			return aws.String(f.opts.endpoint)
		}(),
	})
	f.clients[region] = c
	return c
}

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
		var r request
		if err := json.Unmarshal(scanner.Bytes(), &r); err != nil {
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

// recording copies one recording's files; its media in parallel, its metadata file last.
func (f *fetcher) recording(ctx context.Context, r request) answer {
	a := answer{ID: r.ID}
	if !filepath.IsAbs(r.Dir) {
		a.Error = &failure{Kind: "target", Message: fmt.Sprintf("folder %q is not an absolute path", r.Dir)}
		return a
	}
	type result struct {
		file    fileResult
		err     *failure
		retries int
	}
	results := make([]result, len(r.Files))
	var wg sync.WaitGroup
	for i, fr := range r.Files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, retries, err := f.file(ctx, r.Dir, fr)
			results[i] = result{res, err, retries}
		}()
	}
	wg.Wait()
	written := 0
	a.Checks = map[string]int{}
	for _, res := range results {
		a.Attempts += res.retries
		if res.err != nil {
			if a.Error == nil {
				a.Error = res.err
			}
			continue
		}
		if res.file.note != "" {
			a.Notes = append(a.Notes, res.file.note)
		}
		if res.file.written {
			written++
			a.Bytes += res.file.bytes
			a.Checks[res.file.check]++
		}
	}
	if a.Error != nil {
		return a
	}
	a.Files = written
	if written == 0 && r.Metadata.Present {
		a.Skipped = true
		return a
	}
	data := []byte(r.Metadata.Data)
	if err := writeFile(r.Dir, r.Metadata.Name, data); err != nil {
		a.Error = err
		return a
	}
	if err := syncDir(r.Dir); err != nil {
		a.Error = err
		return a
	}
	a.Files++
	a.Bytes += int64(len(data))
	return a
}

type fileResult struct {
	written bool
	bytes   int64
	check   string
	note    string
}

func (f *fetcher) file(ctx context.Context, dir string, fr fileRequest) (fileResult, int, *failure) {
	what := "s3://" + fr.Bucket + "/" + fr.Key
	if err := checkName(fr.Name); err != nil {
		return fileResult{}, 0, err
	}
	retries := 0
	if fr.Have >= 0 {
		var size int64
		err := f.retry(ctx, &retries, func() *failure {
			var e *failure
			size, e = f.head(ctx, fr, what)
			return e
		})
		if err != nil && err.Kind == "s3" && (err.Status == 404 || err.Code == "NoSuchKey" || err.Code == "NotFound") {
			return fileResult{}, retries, nil // gone from S3 (retention) but here under its final name: complete
		}
		if err != nil {
			return fileResult{}, retries, err
		}
		if size == fr.Have {
			return fileResult{}, retries, nil
		}
		note := fmt.Sprintf("%s has %d bytes but S3 has %d; downloading it again", fr.Name, fr.Have, size)
		res, more, err := f.download(ctx, dir, fr, what)
		res.note = note
		return res, retries + more, err
	}
	res, more, err := f.download(ctx, dir, fr, what)
	return res, retries + more, err
}

func (f *fetcher) download(ctx context.Context, dir string, fr fileRequest, what string) (fileResult, int, *failure) {
	var res fileResult
	retries := 0
	err := f.retry(ctx, &retries, func() *failure {
		var e *failure
		res, e = f.attempt(ctx, dir, fr, what)
		return e
	})
	return res, retries, err
}

// retry runs action until it succeeds, fails for good, or the retries are spent.
func (f *fetcher) retry(ctx context.Context, retries *int, action func() *failure) *failure {
	for attempt := 0; ; attempt++ {
		err := action()
		if err == nil || !f.retryable(err) || attempt >= f.opts.retries {
			return err
		}
		*retries++
		d := f.opts.baseDelay << attempt
		if d > f.opts.maxDelay || d <= 0 {
			d = f.opts.maxDelay
		}
		wait := d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
	}
}

func (f *fetcher) retryable(err *failure) bool {
	switch err.Kind {
	case "target", "tls":
		return false
	case "s3":
		return err.Status != 403 && err.Status != 404 && !f.opts.finalCodes[err.Code]
	}
	return true
}

func (f *fetcher) head(ctx context.Context, fr fileRequest, what string) (int64, *failure) {
	f.slots <- struct{}{}
	defer func() { <-f.slots }()
	out, err := f.client(fr.Region).HeadObject(ctx, &s3.HeadObjectInput{Bucket: &fr.Bucket, Key: &fr.Key})
	if err != nil {
		return 0, s3Failure(err, what)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// attempt is one GET of the object into a temporary file, checked, synced and renamed.
func (f *fetcher) attempt(ctx context.Context, dir string, fr fileRequest, what string) (fileResult, *failure) {
	f.slots <- struct{}{}
	defer func() { <-f.slots }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	final := filepath.Join(dir, fr.Name)
	temp := filepath.Join(dir, fmt.Sprintf(".%s.part-%08x", fr.Name, rand.Uint32()))
	file, ferr := createTemp(dir, temp)
	if ferr != nil {
		return fileResult{}, ferr
	}
	ok := false
	defer func() {
		if !ok {
			file.Close()
			os.Remove(temp)
		}
	}()
	out, err := f.client(fr.Region).GetObject(ctx, &s3.GetObjectInput{Bucket: &fr.Bucket, Key: &fr.Key},
		func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue("x-amz-checksum-mode", "ENABLED"))
		})
	if err != nil {
		return fileResult{}, s3Failure(err, what)
	}
	defer out.Body.Close()
	check, hasher, expected := chooseCheck(out)
	body := &watchdog{r: out.Body, limit: f.opts.stall, cancel: cancel}
	body.arm()
	defer body.stop()
	bufp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bufp)
	var n int64
	var rerr, werr error
	buf := *bufp
	for {
		// fill the buffer before writing: a socket read brings 16-64 KiB, a write per read would be
		// four to sixteen system calls where one does
		m, err := fill(body, buf)
		if m > 0 {
			if hasher != nil {
				hasher.Write(buf[:m])
			}
			if _, err := file.Write(buf[:m]); err != nil {
				werr = err
				break
			}
			n += int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	if werr != nil {
		return fileResult{}, &failure{Kind: "target", Message: fmt.Sprintf("writing %s failed: %v", final, plainError(werr))}
	}
	if rerr != nil {
		if body.fired() {
			return fileResult{}, &failure{Kind: "network", Object: what,
				Message: fmt.Sprintf("%s: no data for %.0fs; cancelled", what, f.opts.stall.Seconds())}
		}
		return fileResult{}, &failure{Kind: "network", Object: what,
			Message: fmt.Sprintf("reading %s failed: %v", what, rerr)}
	}
	if length := aws.ToInt64(out.ContentLength); out.ContentLength != nil && n != length {
		return fileResult{}, &failure{Kind: "integrity", Object: what,
			Message: fmt.Sprintf("%s: got %d bytes, Content-Length says %d", what, n, length)}
	}
	if hasher != nil && !equalSum(hasher.Sum(nil), expected) {
		return fileResult{}, &failure{Kind: "integrity", Object: what,
			Message: fmt.Sprintf("%s: %s differs from the one S3 gave", what, checkNames[check])}
	}
	if err := file.Sync(); err != nil {
		return fileResult{}, &failure{Kind: "target", Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
	}
	if err := file.Close(); err != nil {
		return fileResult{}, &failure{Kind: "target", Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
	}
	if err := os.Rename(temp, final); err != nil {
		return fileResult{}, &failure{Kind: "target", Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
	}
	ok = true
	return fileResult{written: true, bytes: n, check: check}, nil
}

// fill reads into buf until it is full, the body ends (io.EOF, with what was read) or fails.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

var checkNames = map[string]string{
	"crc32c":    "the CRC32C",
	"crc32":     "the CRC32",
	"crc64nvme": "the CRC64NVME",
	"md5":       "the MD5 (ETag)",
}

var crc64nvme = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// chooseCheck picks how the body is verified: a full-object checksum S3 stores (CRC32C and CRC32 are
// computed in hardware), else the ETag when it is the body's MD5 (a single-part upload without SSE-KMS
// or SSE-C), else the size alone.
func chooseCheck(out *s3.GetObjectOutput) (string, hash.Hash, []byte) {
	full := out.ChecksumType == "" || out.ChecksumType == "FULL_OBJECT"
	if full {
		if sum := decodeSum(out.ChecksumCRC32C, 4); sum != nil {
			return "crc32c", crc32.New(crc32.MakeTable(crc32.Castagnoli)), sum
		}
		if sum := decodeSum(out.ChecksumCRC32, 4); sum != nil {
			return "crc32", crc32.NewIEEE(), sum
		}
		if sum := decodeSum(out.ChecksumCRC64NVME, 8); sum != nil {
			return "crc64nvme", crc64.New(crc64nvme), sum
		}
	}
	etag := strings.ToLower(strings.Trim(aws.ToString(out.ETag), "\""))
	if len(etag) == 32 && out.ServerSideEncryption != "aws:kms" && out.SSECustomerAlgorithm == nil {
		if sum, err := hex.DecodeString(etag); err == nil {
			return "md5", md5.New(), sum
		}
	}
	return "size", nil, nil
}

// decodeSum: a base64 checksum header of n bytes (nil when absent, composite or malformed).
func decodeSum(value *string, n int) []byte {
	if value == nil || strings.Contains(*value, "-") {
		return nil
	}
	sum, err := base64.StdEncoding.DecodeString(*value)
	if err != nil || len(sum) != n {
		return nil
	}
	return sum
}

func equalSum(got, want []byte) bool {
	if len(got) != len(want) {
		return false
	}
	if len(got) == 8 { // hash/crc64's Sum is big-endian, as S3's header
		return binary.BigEndian.Uint64(got) == binary.BigEndian.Uint64(want)
	}
	return string(got) == string(want)
}

// s3Failure maps an SDK error: an S3 error response keeps its status, code and message for the worker
// to classify; anything else is a connection-level failure.
func s3Failure(err error, what string) *failure {
	var status int
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var api smithy.APIError
	if errors.As(err, &api) || status != 0 {
		code, message := "", ""
		if api != nil {
			code, message = api.ErrorCode(), api.ErrorMessage()
		}
		return &failure{Kind: "s3", Object: what, Status: status, Code: code, Message: message}
	}
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) || errors.As(err, &verify) {
		// the same on every attempt: not retried
		return &failure{Kind: "tls", Object: what, Message: fmt.Sprintf("S3 transfer of %s failed: %v", what, err)}
	}
	return &failure{Kind: "network", Object: what, Message: fmt.Sprintf("S3 transfer of %s failed: %v", what, err)}
}

func checkName(name string) *failure {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return &failure{Kind: "target", Message: fmt.Sprintf("refusing unsafe file name %q", name)}
	}
	return nil
}

// createTemp makes a recording's temporary file owner-only (0600, whatever the umask; its folder 0700):
// recordings and their metadata are personal data, and the worker writes every file of the target so.
func createTemp(dir, temp string) (*os.File, *failure) {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW
	file, err := os.OpenFile(temp, flags, 0o600)
	if errors.Is(err, os.ErrNotExist) { // the folder is new (or was removed): make it
		if err = os.MkdirAll(dir, 0o700); err == nil {
			file, err = os.OpenFile(temp, flags, 0o600)
		}
	}
	if err == nil {
		if err = file.Chmod(0o600); err != nil {
			file.Close()
			os.Remove(temp)
		}
	}
	if err != nil {
		return nil, &failure{Kind: "target", Message: fmt.Sprintf("cannot write %s: %v", temp, plainError(err))}
	}
	return file, nil
}

// writeFile writes a small file the same way: temporary name, fsync, rename (the folder's fsync follows).
func writeFile(dir, name string, data []byte) *failure {
	if err := checkName(name); err != nil {
		return err
	}
	final := filepath.Join(dir, name)
	temp := filepath.Join(dir, fmt.Sprintf(".%s.part-%08x", name, rand.Uint32()))
	file, ferr := createTemp(dir, temp)
	if ferr != nil {
		return ferr
	}
	_, err := file.Write(data)
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(temp, final)
	}
	if err != nil {
		os.Remove(temp)
		return &failure{Kind: "target", Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
	}
	return nil
}

func syncDir(dir string) *failure {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		if errors.Is(err, syscall.EINVAL) { // a file system that cannot sync folders
			err = nil
		}
		d.Close()
	}
	if err != nil {
		return &failure{Kind: "target", Message: fmt.Sprintf("syncing folder %s failed: %v", dir, plainError(err))}
	}
	return nil
}

// plainError: the system's message without Go's "open <path>:" prefix (the path is named already).
func plainError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// watchdog cancels a download whose body gets no data for `limit`.
type watchdog struct {
	r      io.Reader
	limit  time.Duration
	cancel context.CancelFunc
	timer  *time.Timer
	mu     sync.Mutex
	fire   bool
}

func (w *watchdog) arm() {
	w.timer = time.AfterFunc(w.limit, func() {
		w.mu.Lock()
		w.fire = true
		w.mu.Unlock()
		w.cancel()
	})
}

func (w *watchdog) stop() { w.timer.Stop() }

func (w *watchdog) fired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fire
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.timer.Reset(w.limit)
	}
	return n, err
}
