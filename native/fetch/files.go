package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func checkName(name string) *failure {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return &failure{Kind: kindTarget, Message: fmt.Sprintf("refusing unsafe file name %q", name)}
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
		return nil, &failure{Kind: kindTarget, Message: fmt.Sprintf("cannot write %s: %v", temp, plainError(err))}
	}
	return file, nil
}

// writeFile writes a small file the same way: temporary name, fsync, rename (the folder's fsync follows).
func writeFile(dir, name string, data []byte) *failure {
	if err := checkName(name); err != nil {
		return err
	}
	final := filepath.Join(dir, name)
	temp := filepath.Join(dir, tempName(name))
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
		return &failure{Kind: kindTarget, Message: fmt.Sprintf("writing %s failed: %v", final, plainError(err))}
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
		return &failure{Kind: kindTarget, Message: fmt.Sprintf("syncing folder %s failed: %v", dir, plainError(err))}
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
