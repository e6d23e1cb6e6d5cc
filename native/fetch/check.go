package main

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// How a media file written was verified ($defs/checkName): the answer counts them by these names.
const (
	checkCRC32C    = "crc32c"
	checkCRC32     = "crc32"
	checkCRC64NVME = "crc64nvme"
	checkMD5       = "md5"
	checkSize      = "size" // no checksum: the size alone
)

var checkNames = map[string]string{
	checkCRC32C:    "the CRC32C",
	checkCRC32:     "the CRC32",
	checkCRC64NVME: "the CRC64NVME",
	checkMD5:       "the MD5 (ETag)",
}

var crc64nvme = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// chooseCheck picks how the body is verified: a full-object checksum S3 stores (CRC32C and CRC32 are
// computed in hardware), else the ETag when it is the body's MD5 (a single-part upload without SSE-KMS
// or SSE-C), else the size alone.
func chooseCheck(out *s3.GetObjectOutput) (string, hash.Hash, []byte) {
	full := out.ChecksumType == "" || out.ChecksumType == "FULL_OBJECT"
	if full {
		if sum := decodeSum(out.ChecksumCRC32C, 4); sum != nil {
			return checkCRC32C, crc32.New(crc32.MakeTable(crc32.Castagnoli)), sum
		}
		if sum := decodeSum(out.ChecksumCRC32, 4); sum != nil {
			return checkCRC32, crc32.NewIEEE(), sum
		}
		if sum := decodeSum(out.ChecksumCRC64NVME, 8); sum != nil {
			return checkCRC64NVME, crc64.New(crc64nvme), sum
		}
	}
	etag := strings.ToLower(strings.Trim(aws.ToString(out.ETag), "\""))
	if len(etag) == 32 && out.ServerSideEncryption != "aws:kms" && out.SSECustomerAlgorithm == nil {
		if sum, err := hex.DecodeString(etag); err == nil {
			return checkMD5, md5.New(), sum
		}
	}
	return checkSize, nil, nil
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
