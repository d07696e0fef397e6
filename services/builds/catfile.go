package builds

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shiploop/shiploop/pkg/vcsarg"
)

// catFile is one long-lived `git cat-file --batch-command` in a mirror: it
// answers object existence and file contents without a git process per
// question (each costs about a millisecond on the webhook → step path).
// A git started before a fetch still sees the objects the fetch brought:
// git looks for new packs and loose objects when one is not found.
//
// Its questions go on stdin, one a line, so a name holding a newline would
// be a second command: every name is checked (checkObjectName) before it
// is written.
type catFile struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	used time.Time
}

// catFileIdle is how long an unused cat-file process is kept.
const catFileIdle = 5 * time.Minute

func startCatFile(dir string, env []string) (*catFile, error) {
	cmd := exec.Command("git", "cat-file", "--batch-command")
	cmd.Dir = dir
	cmd.Env = env
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("git cat-file --batch-command: %w", err)
	}
	return &catFile{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 64<<10), used: time.Now()}, nil
}

func (c *catFile) close() {
	_ = c.in.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// errBadObjectName refuses a name that cannot go on cat-file's stdin.
var errBadObjectName = errors.New("object name holds a line break or NUL")

// checkObjectName checks a cat-file question: commit must be a hexadecimal
// id (vcsarg.CommitOrPrefix), suffix (":<path>", "^{commit}") one line.
func checkObjectName(commit, suffix string) error {
	if err := vcsarg.CommitOrPrefix(commit); err != nil {
		return err
	}
	if strings.ContainsAny(suffix, "\n\r\x00") {
		return fmt.Errorf("%q: %w", suffix, errBadObjectName)
	}
	return nil
}

// errCatFileBroken means the process died or answered out of step; it is
// replaced at the next question.
var errCatFileBroken = errors.New("git cat-file --batch-command stopped answering")

// query asks one question ("info" or "contents") about a checked name and
// reports the object's type and, for contents, its bytes; found is false
// for a missing or ambiguous name.
func (c *catFile) query(command, name string) (typ string, data []byte, found bool, err error) {
	if strings.ContainsAny(name, "\n\r\x00") {
		return "", nil, false, errBadObjectName
	}
	c.used = time.Now()
	if _, err := io.WriteString(c.in, command+" "+name+"\n"); err != nil {
		return "", nil, false, fmt.Errorf("%w: %v", errCatFileBroken, err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return "", nil, false, fmt.Errorf("%w: %v", errCatFileBroken, err)
	}
	line = strings.TrimSuffix(line, "\n")
	if line == name+" missing" || line == name+" ambiguous" {
		return "", nil, false, nil
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		return "", nil, false, fmt.Errorf("%w: answered %q to %s %s", errCatFileBroken, line, command, name)
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || size < 0 {
		return "", nil, false, fmt.Errorf("%w: answered %q to %s %s", errCatFileBroken, line, command, name)
	}
	if command != "contents" {
		return f[1], nil, true, nil
	}
	data = make([]byte, size+1) // and the newline after the contents
	if _, err := io.ReadFull(c.out, data); err != nil || data[size] != '\n' {
		return "", nil, false, fmt.Errorf("%w: short contents of %s", errCatFileBroken, name)
	}
	return f[1], data[:size], true, nil
}

// withCatFile runs fn with the mirror's cat-file process, starting one when
// there is none or the last one broke.
func (m *mirrors) withCatFile(dir string, fn func(*catFile) error) error {
	m.mu.Lock()
	c := m.catFiles[dir]
	now := time.Now()
	for d, other := range m.catFiles {
		if d != dir && other.mu.TryLock() {
			if now.Sub(other.used) > catFileIdle {
				other.close()
				delete(m.catFiles, d)
			}
			other.mu.Unlock()
		}
	}
	if c == nil {
		var err error
		if c, err = startCatFile(dir, append(gitEnv(), "GIT_ALLOW_PROTOCOL=file")); err != nil {
			m.mu.Unlock()
			return err
		}
		m.catFiles[dir] = c
	}
	m.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	err := fn(c)
	if errors.Is(err, errCatFileBroken) {
		c.close()
		m.mu.Lock()
		if m.catFiles[dir] == c {
			delete(m.catFiles, dir)
		}
		m.mu.Unlock()
	}
	return err
}

// askCatFile is withCatFile asked a second time, of a new process, when
// the first one broke (killed, or gone after its mirror was removed).
func (m *mirrors) askCatFile(dir string, fn func(*catFile) error) error {
	err := m.withCatFile(dir, fn)
	if errors.Is(err, errCatFileBroken) {
		err = m.withCatFile(dir, fn)
	}
	return err
}

// hasCommit reports whether the mirror holds commit.
func (m *mirrors) hasCommit(dir, commit string) (bool, error) {
	const suffix = "^{commit}"
	if err := checkObjectName(commit, suffix); err != nil {
		return false, err
	}
	var found bool
	err := m.askCatFile(dir, func(c *catFile) (err error) {
		_, _, found, err = c.query("info", commit+suffix)
		return err
	})
	return found, err
}

// readFile returns the contents of path in commit, errNoFile when the
// commit has no such file.
func (m *mirrors) readFile(dir, commit, path string) ([]byte, error) {
	if err := checkObjectName(commit, ":"+path); err != nil {
		return nil, err
	}
	var (
		typ   string
		data  []byte
		found bool
	)
	err := m.askCatFile(dir, func(c *catFile) (err error) {
		typ, data, found, err = c.query("contents", commit+":"+path)
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("git cat-file %s:%s: %w", commit, path, err)
	case !found || typ != "blob":
		return nil, errNoFile
	}
	return data, nil
}
