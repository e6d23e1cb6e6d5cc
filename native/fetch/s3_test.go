package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// s3Error: an error as the SDK returns one for an S3 error response.
func s3Error(status int, apiErr error) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      apiErr,
		},
		RequestID: "req-1",
	}}
}

type s3FailureCase struct {
	name   string
	err    error
	kind   string
	status int
	code   string
	msg    string // the whole message, or "" for any
}

func s3FailureCases() []s3FailureCase {
	return []s3FailureCase{
		{"denied", s3Error(403, &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"}),
			kindS3, 403, "AccessDenied", "Access Denied"},
		{"missing key", s3Error(404, &smithy.GenericAPIError{Code: "NoSuchKey", Message: "The specified key does not exist."}),
			kindS3, 404, "NoSuchKey", "The specified key does not exist."},
		{"HEAD 404, no body", s3Error(404, errors.New("http response error StatusCode: 404")), kindS3, 404, "", ""},
		{"throttled", s3Error(503, &smithy.GenericAPIError{Code: "SlowDown", Message: "Please reduce your request rate."}),
			kindS3, 503, "SlowDown", "Please reduce your request rate."},
		{"API error without a response", &smithy.GenericAPIError{Code: "InvalidObjectState", Message: "archived"},
			kindS3, 0, "InvalidObjectState", "archived"},
		{"unknown CA", &smithy.OperationError{Err: x509.UnknownAuthorityError{}}, kindTLS, 0, "", ""},
		{"wrong host", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "s3.example"}, kindTLS, 0, "", ""},
		{"expired", x509.CertificateInvalidError{Cert: &x509.Certificate{}, Reason: x509.Expired}, kindTLS, 0, "", ""},
		{"verification", &tls.CertificateVerificationError{Err: errors.New("bad chain")}, kindTLS, 0, "", ""},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, kindNetwork, 0, "", ""},
		{"timeout", context.DeadlineExceeded, kindNetwork, 0, "", ""},
		{"cut short", io.ErrUnexpectedEOF, kindNetwork, 0, "", "S3 transfer of s3://b/k failed: unexpected EOF"},
	}
}

func TestS3FailureMapsSDKErrors(t *testing.T) {
	for _, tc := range s3FailureCases() {
		t.Run(tc.name, func(t *testing.T) {
			f := s3Failure(tc.err, "s3://b/k")
			if f.Kind != tc.kind || f.Status != tc.status || f.Code != tc.code || f.Object != "s3://b/k" {
				t.Errorf("got %+v, want kind %s, status %d, code %q", f, tc.kind, tc.status, tc.code)
			}
			if tc.msg != "" && f.Message != tc.msg {
				t.Errorf("message %q, want %q", f.Message, tc.msg)
			}
			if tc.kind != kindS3 && f.Message == "" {
				t.Errorf("no message")
			}
		})
	}
}

func TestRetryableFailures(t *testing.T) {
	f := &fetcher{opts: options{finalCodes: map[string]bool{"NoSuchBucket": true}}}
	for _, tc := range []struct {
		failure failure
		retry   bool
	}{
		{failure{Kind: kindS3, Status: 503, Code: "SlowDown"}, true},
		{failure{Kind: kindS3, Status: 500, Code: "InternalError"}, true},
		{failure{Kind: kindS3, Status: 403, Code: "AccessDenied"}, false},
		{failure{Kind: kindS3, Status: 404}, false},
		{failure{Kind: kindS3, Status: 404, Code: "NoSuchKey"}, false},
		{failure{Kind: kindS3, Status: 400, Code: "NoSuchBucket"}, false}, // a -final-codes code
		{failure{Kind: kindS3, Status: 400, Code: "RequestTimeout"}, true},
		{failure{Kind: kindNetwork}, true},
		{failure{Kind: kindIntegrity}, true},
		{failure{Kind: kindTLS}, false},
		{failure{Kind: kindTarget}, false},
	} {
		if got := f.retryable(&tc.failure); got != tc.retry {
			t.Errorf("retryable(%+v) = %v, want %v", tc.failure, got, tc.retry)
		}
	}
}
