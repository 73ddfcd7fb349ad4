//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCancelled runs hsmctl with stdin, cancels its context after a moment
// and returns its result; it fails the test if the run does not return soon
// after the cancellation.
func runCancelled(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, stdin, &out, &errOut) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case code := <-done:
		return result{stdout: out.String(), stderr: errOut.String(), code: code}
	case <-time.After(10 * time.Second):
		t.Fatalf("hsmctl %v did not return after its context was cancelled", args)
		return result{}
	}
}

// TestInterruptedIO: a cancelled context (SIGINT/SIGTERM in main) ends a
// command blocked reading stdin, opening or reading a FIFO, or opening a
// FIFO for --out.
func TestInterruptedIO(t *testing.T) {
	d := newDevDir(t)
	d.must(t, nil, "keys", "generate", "--label", "aes", "--type", "aes-256")
	d.must(t, nil, "keys", "generate", "--label", "ec", "--type", "ec-p256")
	cfg := []string{"--config", d.config}

	t.Run("stdin", func(t *testing.T) {
		pr, pw := io.Pipe() // never written: a read blocks
		defer pw.Close()
		r := runCancelled(t, pr, append(cfg, "encrypt", "--label", "aes")...)
		requireOneLineError(t, r, exitError, "reading standard input: interrupted")
		r = runCancelled(t, pr, append(cfg, "sign", "--label", "ec")...)
		requireOneLineError(t, r, exitError, "reading standard input: interrupted")
	})

	t.Run("fifo in, no writer", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "in")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		r := runCancelled(t, nil, append(cfg, "encrypt", "--label", "aes", "--in", fifo)...)
		requireOneLineError(t, r, exitError, "opening "+fifo+": interrupted")
		releaseFIFO(t, fifo, os.O_WRONLY)
	})

	t.Run("fifo in, silent writer", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "in")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		w, err := os.OpenFile(fifo, os.O_RDWR, 0) // a writer that never writes
		require.NoError(t, err)
		defer w.Close()
		r := runCancelled(t, nil, append(cfg, "encrypt", "--label", "aes", "--in", fifo)...)
		requireOneLineError(t, r, exitError, "reading "+fifo+": interrupted")
	})

	t.Run("fifo out, no reader", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "out")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		r := runCancelled(t, nil, append(cfg, "pubkey", "--label", "ec", "--out", fifo)...)
		requireOneLineError(t, r, exitError, "writing "+fifo+": interrupted")
		releaseFIFO(t, fifo, os.O_RDONLY)
	})
}

// releaseFIFO opens fifo from the other side without blocking, so that an
// abandoned open in this test process completes and its goroutine ends.
func releaseFIFO(t *testing.T, fifo string, flag int) {
	t.Helper()
	f, err := os.OpenFile(fifo, flag|syscall.O_NONBLOCK, 0)
	if err == nil {
		time.Sleep(50 * time.Millisecond)
		f.Close()
	}
}

// signalChildEnv makes TestSignalChild act as the child of TestSecondSignal.
const signalChildEnv = "HSMCTL_TEST_SIGNAL_CHILD"

// TestSignalChild is not a test: run by TestSecondSignal, it wires signals
// as main does, then ignores the cancellation like a command stuck where it
// cannot see it.
func TestSignalChild(t *testing.T) {
	if os.Getenv(signalChildEnv) != "1" {
		t.Skip("helper process for TestSecondSignal")
	}
	ctx, stop := signalContext(context.Background())
	defer stop()
	os.Stdout.WriteString("ready\n")
	<-ctx.Done()
	os.Stdout.WriteString("cancelled\n")
	time.Sleep(time.Minute) // stuck
	os.Exit(0)
}

// TestSecondSignal: the first SIGINT cancels the context; a second one kills
// the process with the default behaviour even if the command ignores the
// cancellation.
func TestSecondSignal(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), signalChildEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	waited := make(chan error, 1)
	defer func() {
		select {
		case <-waited:
		default:
			cmd.Process.Kill()
			<-waited
		}
	}()
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan())
	require.Equal(t, "ready", lines.Text())

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.True(t, lines.Scan(), "the first SIGINT did not cancel the context")
	require.Equal(t, "cancelled", lines.Text())
	go func() {
		io.Copy(io.Discard, stdout)
		waited <- cmd.Wait()
	}()

	// The default handling is restored just after the cancellation: signal
	// until the process dies.
	deadline := time.After(10 * time.Second)
	for {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-waited:
			waited <- err // for the deferred check
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "child exited normally: %v", err)
			ws, ok := ee.Sys().(syscall.WaitStatus)
			require.True(t, ok)
			assert.True(t, ws.Signaled() && ws.Signal() == syscall.SIGINT, "child ended by %v, want SIGINT", err)
			return
		case <-deadline:
			t.Fatal("a second SIGINT did not end the process")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
