package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// recording copies one recording's files; its media in parallel, its metadata file last.
func (f *fetcher) recording(ctx context.Context, r request) answer {
	a := answer{ID: r.ID}
	if !filepath.IsAbs(r.Dir) {
		a.Error = &failure{Kind: kindTarget, Message: fmt.Sprintf("folder %q is not an absolute path", r.Dir)}
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
		if err != nil && err.Kind == kindS3 && (err.Status == 404 || err.Code == "NoSuchKey" || err.Code == "NotFound") {
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

// attempt is one GET of the object into a temporary file, checked, synced and renamed.
func (f *fetcher) attempt(ctx context.Context, dir string, fr fileRequest, what string) (fileResult, *failure) {
	f.slots <- struct{}{}
	defer func() { <-f.slots }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	final := filepath.Join(dir, fr.Name)
	temp := filepath.Join(dir, tempName(fr.Name))
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
		return fileResult{}, &failure{Kind: kindTarget, Message: fmt.Sprintf("writing %s failed: %v", final, plainError(werr))}
	}
	if rerr != nil {
		if body.fired() {
			return fileResult{}, &failure{Kind: kindNetwork, Object: what,
				Message: fmt.Sprintf("%s: no data for %.0fs; cancelled", what, f.opts.stall.Seconds())}
		}
		return fileResult{}, &failure{Kind: kindNetwork, Object: what,
			Message: fmt.Sprintf("reading %s failed: %v", what, rerr)}
	}
	if length := aws.ToInt64(out.ContentLength); out.ContentLength != nil && n != length {
		return fileResult{}, &failure{Kind: kindIntegrity, Object: what,
			Message: fmt.Sprintf("%s: got %d bytes, Content-Length says %d", what, n, length)}
	}
	if hasher != nil && !equalSum(hasher.Sum(nil), expected) {
		return fileResult{}, &failure{Kind: kindIntegrity, Object: what,
			Message: fmt.Sprintf("%s: %s differs from the one S3 gave", what, checkNames[check])}
	}
	if err := file.Sync(); err != nil {
		return fileResult{}, &failure{Kind: kindTarget, Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
	}
	if err := file.Close(); err != nil {
		return fileResult{}, &failure{Kind: kindTarget, Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
	}
	if err := os.Rename(temp, final); err != nil {
		return fileResult{}, &failure{Kind: kindTarget, Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
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
