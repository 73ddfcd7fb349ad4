//go:build unix

package main

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutputTargets checks that --out writes where it points without
// replacing what is there: a symlink's target, a FIFO, a file's mode; and that
// a directory or an empty --out is refused with nothing written.
func TestOutputTargets(t *testing.T) {
	d := newDevDir(t)
	d.must(t, nil, "keys", "generate", "--label", "k", "--type", "ec-p256")
	want := d.must(t, nil, "pubkey", "--label", "k")
	work := t.TempDir()

	t.Run("symlink", func(t *testing.T) {
		target := writeFile(t, work, "target.pem", []byte("old"))
		link := filepath.Join(work, "link.pem")
		require.NoError(t, os.Symlink("target.pem", link))
		d.must(t, nil, "pubkey", "--label", "k", "--out", link)
		li, err := os.Lstat(link)
		require.NoError(t, err)
		assert.NotZero(t, li.Mode()&os.ModeSymlink, "the link was replaced")
		got, err := os.ReadFile(target)
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
		assertNoTempFiles(t, work)
	})

	t.Run("dangling symlink", func(t *testing.T) {
		link := filepath.Join(work, "dangling.pem")
		require.NoError(t, os.Symlink("missing.pem", link))
		requireOneLineError(t, d.run(t, nil, "pubkey", "--label", "k", "--out", link), exitError, link)
		assert.NoFileExists(t, filepath.Join(work, "missing.pem"))
		li, err := os.Lstat(link)
		require.NoError(t, err)
		assert.NotZero(t, li.Mode()&os.ModeSymlink)
	})

	t.Run("mode kept", func(t *testing.T) {
		p := writeFile(t, work, "kept.pem", []byte("old"))
		require.NoError(t, os.Chmod(p, 0o640))
		d.must(t, nil, "pubkey", "--label", "k", "--out", p)
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	})

	t.Run("new file", func(t *testing.T) {
		p := filepath.Join(work, "new.pem")
		d.must(t, nil, "pubkey", "--label", "k", "--out", p)
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	})

	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(work, "fifo")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		got := make(chan []byte, 1)
		go func() {
			f, err := os.Open(fifo) // blocks until hsmctl opens it for writing
			if err != nil {
				got <- nil
				return
			}
			defer f.Close()
			data, _ := io.ReadAll(f)
			got <- data
		}()
		d.must(t, nil, "pubkey", "--label", "k", "--out", fifo)
		select {
		case data := <-got:
			assert.Equal(t, want, string(data))
		case <-time.After(10 * time.Second):
			t.Fatal("nothing was written to the FIFO")
		}
		fi, err := os.Lstat(fifo)
		require.NoError(t, err)
		assert.NotZero(t, fi.Mode()&os.ModeNamedPipe, "the FIFO was replaced")
	})

	t.Run("directory", func(t *testing.T) {
		dir := filepath.Join(work, "adir")
		require.NoError(t, os.Mkdir(dir, 0o700))
		before := listDir(t, work)
		requireOneLineError(t, d.run(t, nil, "pubkey", "--label", "k", "--out", dir), exitError, dir+" is a directory")
		assert.Equal(t, before, listDir(t, work), "something was written beside the directory")
		assert.Empty(t, listDir(t, dir), "something was written in the directory")
	})

	t.Run("empty", func(t *testing.T) {
		requireOneLineError(t, d.run(t, nil, "pubkey", "--label", "k", "--out", ""), exitError, "--out is empty")
	})
}

// listDir returns the names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// assertNoTempFiles checks that no temporary file was left in dir.
func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	for _, name := range listDir(t, dir) {
		assert.NotContains(t, name, ".tmp-", "temporary file left in %s", dir)
	}
}
