package main

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestGenhashMain(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page for "+r.Host)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := genhashMain([]string{"-s", u.Hostname(), "-p", u.Port(), "-u", "/", "-V", "www.example.org"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("genhash exited %d: %s", code, stderr.String())
	}
	if want := fmt.Sprintf("%x\n", md5.Sum([]byte("page for www.example.org"))); stdout.String() != want {
		t.Errorf("genhash printed %q, want %q", stdout.String(), want)
	}

	for _, args := range [][]string{
		{},
		{"-s", "127.0.0.1", "-p", "0", "-u", "/"},
		{"-s", "127.0.0.1", "-p", "80"},
		{"-s", "127.0.0.1", "-p", "x", "-u", "/"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := genhashMain(args, &stdout, &stderr); code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "usage") {
			t.Errorf("genhash %q exited %d, printed %q %q; want 2 and a usage line", args, code, stdout.String(), stderr.String())
		}
	}
	stdout.Reset()
	stderr.Reset()
	srv.Close()
	if code := genhashMain([]string{"-s", u.Hostname(), "-p", u.Port(), "-u", "/", "-t", "1"}, &stdout, &stderr); code != 1 || stdout.Len() != 0 {
		t.Errorf("genhash against a closed port exited %d, printed %q", code, stdout.String())
	}
}
