package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Input limits.
const (
	// maxRawMessage is the largest message signed or verified whole, without
	// hashing first (Ed25519): the library's and CloudHSM's 16 KiB limit.
	maxRawMessage = 16 * 1024
	// maxSignature bounds a signature file (RSA-4096 signatures are 512 bytes).
	maxSignature = 64 * 1024
)

// openInput opens path for reading; "-" is stdin.
func (a *app) openInput(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(a.stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return f, nil
}

// inputName describes path in messages.
func inputName(path string) string {
	if path == "-" {
		return "standard input"
	}
	return path
}

// readInput reads all of path ("-" is stdin), refusing empty input and
// input larger than limit bytes. what names the limit's reason.
func (a *app) readInput(path string, limit int, what string) ([]byte, error) {
	r, err := a.openInput(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", inputName(path), err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes, the limit for %s", inputName(path), limit, what)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s is empty", inputName(path))
	}
	return data, nil
}

// writeOutput writes data to path ("-" is stdout). A file is written to a
// temporary file in the same directory and renamed into place, so a failure
// never leaves a partial file behind (and an existing file is untouched).
func (a *app) writeOutput(path string, data []byte, perm os.FileMode) error {
	if path == "-" {
		_, err := io.Copy(a.stdout, bytes.NewReader(data))
		return err
	}
	return writeFileAtomic(path, data, perm)
}

// writeFileAtomic writes data to a temporary file next to path, then renames
// it to path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	done = true
	return nil
}
