package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheckNameRefusesWhatIsNotOneSegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"ab12.mp3.bin", true}, {".hidden", true}, {"..a", true}, {"a b é", true},
		{"", false}, {".", false}, {"..", false}, {"a/b", false}, {"/", false}, {"a\x00", false},
	} {
		err := checkName(tc.name)
		if (err == nil) != tc.ok || (err != nil && err.Kind != kindTarget) {
			t.Errorf("checkName(%q) = %+v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestWriteFileIsOwnerOnlyAndLeavesNoTemporaryFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "folder")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	if err := writeFile(dir, "r.json", []byte(`{"id":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(dir); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "r.json"))
	if err != nil || info.Mode().Perm() != 0o600 || info.Size() != 8 {
		t.Fatalf("r.json: %v %v", info, err)
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o700 {
		t.Errorf("the folder made is %v", d.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestWriteFileFailuresAreTargetFailures(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	for _, tc := range []struct {
		name, dir, file, msg string
	}{
		{"unsafe name", dir, "../x", `refusing unsafe file name "../x"`},
		{"a file where the folder should be", filepath.Join(dir, "file"), "r.json", "cannot write " + filepath.Join(dir, "file") + "/.r.json.part-"},
		{"a folder where the file should be", dir, "", `refusing unsafe file name ""`},
	} {
		err := writeFile(tc.dir, tc.file, []byte("x"))
		if err == nil || err.Kind != kindTarget || !strings.HasPrefix(err.Message, tc.msg) {
			t.Errorf("%s: %+v", tc.name, err)
		}
	}
	if err := syncDir(filepath.Join(dir, "missing")); err == nil || err.Kind != kindTarget {
		t.Errorf("syncDir of a missing folder: %+v", err)
	}
}

func TestPlainErrorDropsThePath(t *testing.T) {
	_, err := os.Open("/nonexistent/x")
	if got := plainError(err).Error(); got != "no such file or directory" {
		t.Errorf("plainError(open) = %q", got)
	}
	err = os.Rename("/nonexistent/a", "/nonexistent/b")
	if got := plainError(err).Error(); got != "no such file or directory" {
		t.Errorf("plainError(rename) = %q", got)
	}
	if got := plainError(syscall.ENOSPC).Error(); got != "no space left on device" {
		t.Errorf("plainError(errno) = %q", got)
	}
}

func TestTempNameIsFreshEachTime(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		name := tempName("a.bin")
		suffix, ok := strings.CutPrefix(name, ".a.bin.part-")
		if !ok || len(suffix) != 8 || strings.Trim(suffix, "0123456789abcdef") != "" {
			t.Fatalf("tempName = %q", name)
		}
		seen[name] = true
	}
	if len(seen) < 99 {
		t.Errorf("only %d different names in 100", len(seen))
	}
}
