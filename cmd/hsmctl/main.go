// Command hsmctl drives the hsmclient library from the command line: it
// creates local SoftHSM tokens for development, manages keys, signs and
// verifies, encrypts and decrypts with AES-GCM, reports cluster health and
// runs an end-to-end demo. See docs/hsmctl.md.
//
// Exit codes: 0 success; 1 a check answered "no" (verify: signature invalid;
// health: no cluster usable; demo: a check failed); 2 any error (bad usage,
// configuration, token, key or I/O problem). Errors are printed to stderr as
// one line starting with "hsmctl: ".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitNo    = 1 // a check answered "no": invalid signature, unhealthy, demo failure
	exitError = 2 // bad usage, configuration, token or I/O error
)

func main() {
	ctx, stop := signalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext returns a context cancelled by the first SIGINT or SIGTERM.
// That first signal also restores the default handling, so a second one ends
// the process even where the command cannot see the cancellation (inside a
// PKCS#11 call, say). Reads of stdin, files and FIFOs, and writes to FIFOs
// and devices, watch the context (see openInput and writeOutputFile).
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

// run executes one hsmctl command line and returns its exit code. Tests call
// it in-process with captured streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	a.closeClient()
	if err == nil {
		return exitOK
	}
	code := exitError
	var ee *exitErr
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := errorLine(err); msg != "" {
		fmt.Fprintln(stderr, "hsmctl: "+msg)
	}
	return code
}

// exitErr carries a specific exit code. A nil err prints nothing.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitErr) Unwrap() error { return e.err }

// withCode gives err a specific exit code.
func withCode(code int, err error) error { return &exitErr{code: code, err: err} }

// errorLine renders err as one line: hsmclient's repeated "hsmclient: "
// prefixes are dropped (every line already starts with "hsmctl: ") and the
// lines of joined errors are separated by "; ".
func errorLine(err error) string {
	msg := strings.ReplaceAll(err.Error(), "hsmclient: ", "")
	var b strings.Builder
	for _, line := range strings.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' }) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	return b.String()
}
