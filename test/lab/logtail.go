package lab

import (
	"bytes"
	"strings"
	"sync"
)

// LogTail is an io.Writer for a daemon's output: it splits it into lines, keeps the last Max
// of them and hands each to OnLine as it completes. Safe for concurrent use.
type LogTail struct {
	Max    int               // lines kept; 0 means 1000
	OnLine func(line string) // may be nil

	mu      sync.Mutex
	partial []byte
	lines   []string
	n       int // lines ever written
}

func (l *LogTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.add(line)
	}
	return len(p), nil
}

func (l *LogTail) add(line string) {
	keep := l.Max
	if keep <= 0 {
		keep = 1000
	}
	l.lines = append(l.lines, line)
	if len(l.lines) > keep {
		l.lines = append(l.lines[:0], l.lines[len(l.lines)-keep:]...)
	}
	l.n++
	if l.OnLine != nil {
		l.OnLine(line)
	}
}

// Mark returns a position for Since.
func (l *LogTail) Mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Since returns the kept lines written after mark.
func (l *LogTail) Since(mark int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	skip := len(l.lines) - (l.n - mark)
	skip = min(max(skip, 0), len(l.lines))
	return append([]string(nil), l.lines[skip:]...)
}

// Contains reports whether a line written after mark contains every one of words.
func (l *LogTail) Contains(mark int, words ...string) bool {
	for _, line := range l.Since(mark) {
		ok := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
