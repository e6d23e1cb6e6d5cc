package main

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestChooseCheckAndItsSums(t *testing.T) {
	body := []byte("the body")
	md5sum := md5.Sum(body)
	etag := `"` + hex.EncodeToString(md5sum[:]) + `"`
	crc32c := crc32cOf(body)
	crc32ieee := base64.StdEncoding.EncodeToString([]byte{0x1f, 0x5c, 0x3e, 0x7e}) // any 4 bytes
	crc64 := base64.StdEncoding.EncodeToString(make([]byte, 8))
	for _, tc := range []struct {
		name  string
		out   s3.GetObjectOutput
		check string
		match bool // the body's sum equals the expected one
	}{
		{"CRC32C first", s3.GetObjectOutput{ChecksumCRC32C: &crc32c, ChecksumCRC32: &crc32ieee, ETag: &etag}, checkCRC32C, true},
		{"CRC32", s3.GetObjectOutput{ChecksumCRC32: &crc32ieee, ETag: &etag}, checkCRC32, false},
		{"CRC64NVME", s3.GetObjectOutput{ChecksumCRC64NVME: &crc64}, checkCRC64NVME, false},
		{"a composite checksum is not the body's", s3.GetObjectOutput{ChecksumCRC32C: aws.String(crc32c + "-3"), ETag: &etag}, checkMD5, true},
		{"nor one of a multipart upload", s3.GetObjectOutput{ChecksumCRC32C: &crc32c, ChecksumType: types.ChecksumTypeComposite, ETag: &etag}, checkMD5, true},
		{"a malformed checksum", s3.GetObjectOutput{ChecksumCRC32C: aws.String("!!"), ETag: &etag}, checkMD5, true},
		{"the ETag as MD5", s3.GetObjectOutput{ETag: &etag}, checkMD5, true},
		{"a multipart ETag", s3.GetObjectOutput{ETag: aws.String(`"d41d8cd98f00b204e9800998ecf8427e-2"`)}, checkSize, false},
		{"SSE-KMS: the ETag is no MD5", s3.GetObjectOutput{ETag: &etag, ServerSideEncryption: types.ServerSideEncryptionAwsKms}, checkSize, false},
		{"SSE-C: neither", s3.GetObjectOutput{ETag: &etag, SSECustomerAlgorithm: aws.String("AES256")}, checkSize, false},
		{"nothing", s3.GetObjectOutput{}, checkSize, false},
	} {
		check, hasher, expected := chooseCheck(&tc.out)
		if check != tc.check {
			t.Errorf("%s: check %s, want %s", tc.name, check, tc.check)
			continue
		}
		if check == checkSize {
			if hasher != nil || expected != nil {
				t.Errorf("%s: a hasher for the size check", tc.name)
			}
			continue
		}
		hasher.Write(body)
		if got := equalSum(hasher.Sum(nil), expected); got != tc.match {
			t.Errorf("%s: equalSum = %v, want %v", tc.name, got, tc.match)
		}
	}
}

func TestDecodeSumAndEqualSum(t *testing.T) {
	four := base64.StdEncoding.EncodeToString([]byte{1, 2, 3, 4})
	for _, tc := range []struct {
		value *string
		n     int
		ok    bool
	}{
		{nil, 4, false}, {&four, 4, true}, {&four, 8, false}, {aws.String(four + "-2"), 4, false}, {aws.String("%%"), 4, false},
	} {
		if got := decodeSum(tc.value, tc.n); (got != nil) != tc.ok {
			t.Errorf("decodeSum(%v, %d) = %v", aws.ToString(tc.value), tc.n, got)
		}
	}
	for _, tc := range []struct {
		a, b []byte
		eq   bool
	}{
		{[]byte{1, 2, 3, 4}, []byte{1, 2, 3, 4}, true},
		{[]byte{1, 2, 3, 4}, []byte{1, 2, 3, 5}, false},
		{[]byte{1, 2, 3, 4}, []byte{1, 2, 3}, false},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 9}, []byte{0, 0, 0, 0, 0, 0, 0, 9}, true},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 9}, []byte{9, 0, 0, 0, 0, 0, 0, 0}, false},
	} {
		if equalSum(tc.a, tc.b) != tc.eq {
			t.Errorf("equalSum(%v, %v) != %v", tc.a, tc.b, tc.eq)
		}
	}
}
