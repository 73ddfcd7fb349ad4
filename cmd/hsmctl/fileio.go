package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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

// errInterrupted is returned by reads and writes abandoned because the
// command's context was cancelled (SIGINT or SIGTERM).
var errInterrupted = errors.New("interrupted")

// openInput opens path for reading; "-" is stdin. Opening (a FIFO waits for
// a writer) and every read give up with errInterrupted once a.ctx is done.
func (a *app) openInput(path string) (io.ReadCloser, error) {
	ctx := a.context()
	if path == "-" {
		return io.NopCloser(&ctxReader{ctx: ctx, r: a.stdin}), nil
	}
	type opened struct {
		f   *os.File
		err error
	}
	done := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		done <- opened{f, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return nil, fmt.Errorf("input: %w", o.err)
		}
		return struct {
			io.Reader
			io.Closer
		}{&ctxReader{ctx: ctx, r: o.f}, o.f}, nil
	case <-ctx.Done():
		go func() { // close the file if the open ever completes
			if o := <-done; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, fmt.Errorf("opening %s: %w", path, errInterrupted)
	}
}

// ctxReader reads r until ctx is done. Each Read of r runs in a goroutine
// into a private buffer, so a Read blocked on a terminal, pipe or FIFO is
// abandoned (not interrupted: the process is about to exit) and ctxReader
// returns errInterrupted at once.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	buf []byte
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, errInterrupted
	}
	if len(p) == 0 {
		return 0, nil
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := c.r.Read(buf)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		return copy(p, buf[:res.n]), res.err
	case <-c.ctx.Done():
		c.buf = nil // the abandoned Read may still write into it
		return 0, errInterrupted
	}
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

// writeOutput writes data to path ("-" is stdout), as --out asks: see
// writeOutputFile. perm is the mode of a new file.
func (a *app) writeOutput(path string, data []byte, perm os.FileMode) error {
	switch path {
	case "":
		return errors.New("--out is empty: name a file, or - for standard output")
	case "-":
		_, err := io.Copy(a.stdout, bytes.NewReader(data))
		return err
	}
	return writeOutputFile(a.context(), path, data, perm)
}

// writeOutputFile writes data to the file at path the way a shell's
// "> path" would, but never leaves a partial regular file behind:
//   - a symbolic link is followed: its target is written and the link stays;
//     a link to a missing file is refused;
//   - a directory is refused, and nothing is written anywhere;
//   - a device, FIFO or socket is opened for writing and written to, never
//     replaced;
//   - a regular file or a new path is written to a temporary file in the same
//     directory and renamed into place, so a failure leaves the old content;
//     an existing file keeps its permission bits, a new one gets perm.
//
// Writing to a device, FIFO or socket (opening a FIFO waits for a reader)
// gives up with errInterrupted once ctx is done.
func writeOutputFile(ctx context.Context, path string, data []byte, perm os.FileMode) error {
	target := path
	if li, err := os.Lstat(path); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		resolved, err := filepath.EvalSymlinks(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("output %s: a symbolic link to a missing file; name the file itself", path)
			}
			return fmt.Errorf("output %s: %w", path, err)
		}
		target = resolved
	}
	fi, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return writeFileAtomic(target, data, perm)
	case err != nil:
		return fmt.Errorf("output %s: %w", path, err)
	case fi.IsDir():
		return fmt.Errorf("output %s is a directory; name a file", path)
	case fi.Mode().IsRegular():
		return writeFileAtomic(target, data, fi.Mode().Perm())
	}
	// A device, FIFO or socket: write to it in place. No O_CREATE (it exists)
	// and no O_TRUNC (meaningless or harmful for a device).
	done := make(chan error, 1)
	go func() { done <- writeInPlace(path, target, data) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("writing %s: %w", path, errInterrupted)
	}
}

// writeInPlace writes data to the existing non-regular file target (named
// path in messages).
func writeInPlace(path, target string, data []byte) error {
	f, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file next to path, then renames
// it to path with mode perm. It replaces whatever is at path: callers that
// write where a user pointed (--out) use writeOutputFile.
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
