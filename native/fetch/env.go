package main

import (
	"crypto/x509"
	"fmt"
	"os"
)

// What the program reads of its environment ($defs/environment; contract_test.go checks that every
// lookup names one of these). Go itself reads SSL_CERT_FILE, SSL_CERT_DIR, GODEBUG and GOMAXPROCS.
const (
	envAccessKey    = "AWS_ACCESS_KEY_ID"
	envSecretKey    = "AWS_SECRET_ACCESS_KEY"
	envSessionToken = "AWS_SESSION_TOKEN"
	envCABundle     = "AWS_CA_BUNDLE"
)

// trustStore: the system's roots plus the bundle in AWS_CA_BUNDLE (Go reads SSL_CERT_FILE itself).
func trustStore() (*x509.CertPool, error) {
	bundle := os.Getenv(envCABundle)
	if bundle == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(bundle)
	if err != nil {
		return nil, fmt.Errorf(envCABundle+" %s: %v", bundle, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf(envCABundle+" %s: no PEM certificate in it", bundle)
	}
	return pool, nil
}
