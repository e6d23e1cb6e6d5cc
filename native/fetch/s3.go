package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

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

func newFetcher(o options) (*fetcher, error) {
	key, secret := os.Getenv(envAccessKey), os.Getenv(envSecretKey)
	if key == "" || secret == "" {
		return nil, errors.New(envAccessKey + " and " + envSecretKey + " must be set")
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
		creds:   credentials.NewStaticCredentialsProvider(key, secret, os.Getenv(envSessionToken)),
		http:    client,
		clients: map[string]*s3.Client{},
	}
	f.bufs.New = func() any { b := make([]byte, 256<<10); return &b }
	return f, nil
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

func (f *fetcher) retryable(err *failure) bool {
	switch err.Kind {
	case kindTarget, kindTLS:
		return false
	case kindS3:
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
		return &failure{Kind: kindS3, Object: what, Status: status, Code: code, Message: message}
	}
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) || errors.As(err, &verify) {
		// the same on every attempt: not retried
		return &failure{Kind: kindTLS, Object: what, Message: fmt.Sprintf("S3 transfer of %s failed: %v", what, err)}
	}
	return &failure{Kind: kindNetwork, Object: what, Message: fmt.Sprintf("S3 transfer of %s failed: %v", what, err)}
}
