package testhsm

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a p11-kit server exposing one Token on a Unix socket, reached
// through its own copy of p11-kit-client.so: a stand-in for a network HSM
// cluster that tests can kill, restart and freeze.
//
// The server forks a p11-kit-remote child per client connection; the whole
// process group is signalled, so Kill and Stop affect open connections too.
type Server struct {
	// Token is the token being served.
	Token *Token
	// Socket is the path of the Unix socket.
	Socket string
	// ClientModule is this server's private copy of p11-kit-client.so.
	ClientModule string

	t       testing.TB
	logPath string
	mu      sync.Mutex
	pgid    int           // process group of the running server, 0 if none
	exited  chan struct{} // closed when the server process has been waited for
}

// StartServer serves tok with `p11-kit server` and returns once the socket
// accepts connections. The server is killed when the test ends.
func StartServer(t testing.TB, tok *Token) *Server {
	t.Helper()
	// Unix socket paths are limited to 107 bytes; t.TempDir() can be longer.
	sockDir, err := os.MkdirTemp("", "testhsm")
	if err != nil {
		t.Fatalf("testhsm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	dir := t.TempDir()
	s := &Server{
		Token:        tok,
		Socket:       filepath.Join(sockDir, "p11kit.sock"),
		ClientModule: filepath.Join(dir, "p11-kit-client.so"),
		t:            t,
		logPath:      filepath.Join(dir, "server.log"),
	}
	if err := copyFile(P11KitClientModule(t), s.ClientModule); err != nil {
		t.Fatalf("testhsm: copying p11-kit-client.so: %v", err)
	}
	t.Cleanup(s.Kill)
	s.start(t)
	return s
}

// Address returns the server address, as P11_KIT_SERVER_ADDRESS wants it.
func (s *Server) Address() string { return "unix:path=" + s.Socket }

// Env returns the environment to set before C_Initialize of s.ClientModule.
func (s *Server) Env() map[string]string {
	return map[string]string{"P11_KIT_SERVER_ADDRESS": s.Address()}
}

// Kill sends SIGKILL to the server and its per-connection children and waits
// until they are gone. Clients then get CKR_DEVICE_ERROR on every call until
// they finalize and initialize the client module again (after Restart).
// Killing a server that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pgid == 0 {
		return
	}
	_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
	<-s.exited
	// Children outlive the listener briefly; they are reparented, so wait on
	// /proc rather than on them (zombies nobody reaps do not count).
	deadline := time.Now().Add(10 * time.Second)
	for groupAlive(s.pgid) {
		if time.Now().After(deadline) {
			s.t.Errorf("testhsm: processes of group %d survive SIGKILL", s.pgid)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.pgid = 0
}

// Stop freezes the server and its children with SIGSTOP: calls on open
// connections block until Continue. If the test ends first, the server is
// resumed before the cleanups registered until now (such as OpenSession's
// C_Finalize) run, so that they do not block.
func (s *Server) Stop() {
	s.t.Cleanup(s.Continue)
	s.signal(syscall.SIGSTOP)
}

// Continue resumes a server frozen by Stop.
func (s *Server) Continue() { s.signal(syscall.SIGCONT) }

// Restart kills the server if it runs and starts a new one on the same socket.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.start(t)
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pgid != 0 {
		_ = syscall.Kill(-s.pgid, sig)
	}
}

// start runs the server in its own process group and waits for its socket.
func (s *Server) start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.Socket); err != nil && !os.IsNotExist(err) {
		t.Fatalf("testhsm: removing stale socket: %v", err)
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatalf("testhsm: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command("p11-kit", "server", "--foreground", "--name", s.Socket,
		"--provider", s.Token.Module, "pkcs11:token="+s.Token.Label)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.Token.ConfPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testhsm: starting p11-kit server: %v", err)
	}
	s.pgid = cmd.Process.Pid
	s.exited = make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.exited)

	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", s.Socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-s.exited:
			s.pgid = 0
			out, _ := os.ReadFile(s.logPath)
			t.Fatalf("testhsm: p11-kit server exited: %s", out)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.logPath)
			t.Fatalf("testhsm: p11-kit server not listening on %s after 10s: %s", s.Socket, out)
		}
	}
}

// groupAlive reports whether a process of group pgid exists and is not a zombie.
func groupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// Fields after "pid (comm) ": state ppid pgrp ...
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}
