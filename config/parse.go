package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Limits that bound the work a hostile or broken file can cause.
const (
	// MaxFileSize is the largest configuration file (main or included) read, in bytes.
	MaxFileSize = 16 << 20
	// maxIncludeDepth bounds include nesting; a cycle is reported before it is reached.
	maxIncludeDepth = 8
	// maxIncludedFiles bounds the files read through include, in total.
	maxIncludedFiles = 1000
	// maxBlockDepth bounds block nesting (keepalived's deepest is 4: virtual_server,
	// real_server, HTTP_GET, url).
	maxBlockDepth = 16
	// maxErrors bounds the errors kept (a file of 16 MiB of '}' would otherwise make millions).
	maxErrors = 100
	// maxWarnings bounds the warnings kept, for the same reason.
	maxWarnings = 1000
)

// node is one statement of the generic block tree: `keyword args... [{ children }]`.
type node struct {
	name     string
	pos      Pos
	args     []token
	hasBlock bool
	open     Pos // position of '{' when hasBlock
	children []*node
}

// fileSystem is what include needs; the OS in production, a map in tests and the fuzzer.
type fileSystem interface {
	Glob(pattern string) ([]string, error)
	ReadFile(name string) ([]byte, error)
}

type osFS struct{}

func (osFS) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// ReadFile reads a regular file of at most MaxFileSize bytes. Refusing devices and FIFOs
// keeps `include /dev/zero` from hanging the daemon.
func (osFS) ReadFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	return data, nil
}

// Parse parses src as a keepalived.conf named name (used in positions and to resolve relative
// include paths). On failure the error is an ErrorList holding every error found; the returned
// Config is nil then. Warnings never make Parse fail: they are in Config.Warnings.
func Parse(name string, src []byte) (*Config, error) {
	return parse(osFS{}, name, src, Options{})
}

// ParseWith is Parse with options (the config id for @ID lines, ${_INSTANCE}).
func ParseWith(name string, src []byte, opts Options) (*Config, error) {
	return parse(osFS{}, name, src, opts)
}

// ParseFileWith is ParseFile with options; see ParseWith.
func ParseFileWith(path string, opts Options) (*Config, error) {
	src, err := osFS{}.ReadFile(path)
	if err != nil {
		return nil, ErrorList{{Pos: Pos{File: path}, Msg: "read configuration: " + err.Error()}}
	}
	return ParseWith(path, src, opts)
}

// ParseFile reads and parses the keepalived.conf at path; see Parse.
func ParseFile(path string) (*Config, error) {
	src, err := osFS{}.ReadFile(path)
	if err != nil {
		return nil, ErrorList{{Pos: Pos{File: path}, Msg: "read configuration: " + err.Error()}}
	}
	return Parse(path, src)
}

func parse(fsys fileSystem, name string, src []byte, opts Options) (*Config, error) {
	p := &parser{fs: fsys, pre: newPreprocessor(opts)}
	if len(src) > MaxFileSize {
		p.errorf(Pos{File: name, Line: 1, Col: 1}, "file is %d bytes, larger than the %d bytes allowed", len(src), MaxFileSize)
		return nil, p.errs
	}
	nodes := p.parseFile(name, src)
	cfg := p.build(nodes)
	p.truncate()
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	cfg.Warnings = p.warns
	return cfg, nil
}

// parser holds what is shared while reading a file and its includes, then building Config.
type parser struct {
	fs       fileSystem
	pre      *preprocessor
	errs     ErrorList
	warns    []Warning
	stack    []string // files being read, outermost first, for cycle detection
	files    []string // every file read, in order, to sort messages by
	included int
}

func (p *parser) errorf(pos Pos, format string, args ...any) {
	p.errs = append(p.errs, &Error{Pos: pos, Msg: sprintf(format, args...)})
}

func (p *parser) warnf(pos Pos, format string, args ...any) {
	p.warns = append(p.warns, Warning{Pos: pos, Msg: sprintf(format, args...)})
}

// truncate keeps the first maxErrors errors and maxWarnings warnings (after sorting), noting
// how many were dropped.
func (p *parser) truncate() {
	if n := len(p.errs); n > maxErrors {
		last := p.errs[maxErrors-1].Pos
		p.errs = append(p.errs[:maxErrors:maxErrors], &Error{Pos: last,
			Msg: sprintf("too many errors: %d more not shown, expected these fixed first", n-maxErrors)})
	}
	if n := len(p.warns); n > maxWarnings {
		last := p.warns[maxWarnings-1].Pos
		p.warns = append(p.warns[:maxWarnings:maxWarnings], Warning{Pos: last,
			Msg: sprintf("too many warnings: %d more not shown", n-maxWarnings)})
	}
}

// parseFile lexes and parses one file into top-level statements, expanding includes.
func (p *parser) parseFile(name string, src []byte) []*node {
	if p.pre != nil {
		p.pre.errs = nil
		text, lines := p.pre.process(name, src)
		p.errs = append(p.errs, p.pre.errs...)
		src = []byte(text)
		toks, errs, warns := lex(name, src)
		remap := func(pos *Pos) {
			if pos.Line >= 1 && pos.Line <= len(lines) {
				pos.Line = lines[pos.Line-1]
			} else if n := len(lines); n > 0 {
				pos.Line = lines[n-1]
			}
		}
		for i := range toks {
			remap(&toks[i].pos)
		}
		for _, e := range errs {
			remap(&e.Pos)
		}
		for i := range warns {
			remap(&warns[i].Pos)
		}
		return p.parseTokens(name, toks, errs, warns)
	}
	toks, errs, warns := lex(name, src)
	return p.parseTokens(name, toks, errs, warns)
}

func (p *parser) parseTokens(name string, toks []token, errs ErrorList, warns []Warning) []*node {
	p.errs = append(p.errs, errs...)
	p.warns = append(p.warns, warns...)
	p.stack = append(p.stack, name)
	p.files = append(p.files, name)
	defer func() { p.stack = p.stack[:len(p.stack)-1] }()
	ts := &tokenStream{toks: toks}
	return p.statements(ts, 0, nil)
}

type tokenStream struct {
	toks []token
	i    int
}

func (s *tokenStream) peek() token { return s.toks[s.i] }

func (s *tokenStream) next() token {
	t := s.toks[s.i]
	if t.kind != tokEOF {
		s.i++
	}
	return t
}

func (s *tokenStream) skipNewlines() {
	for s.peek().kind == tokNewline {
		s.i++
	}
}

// statements reads statements until the '}' closing the block opened at open (consumed), or
// to the end of the file when open is nil.
func (p *parser) statements(s *tokenStream, depth int, open *Pos) []*node {
	var nodes []*node
	for {
		s.skipNewlines()
		t := s.peek()
		switch t.kind {
		case tokEOF:
			if open != nil {
				p.errorf(*open, "unclosed '{': expected a matching '}' before the end of the file")
			}
			return nodes
		case tokRBrace:
			s.next()
			if open != nil {
				return nodes
			}
			p.errorf(t.pos, "unexpected '}': no block is open here")
		case tokLBrace:
			s.next()
			p.errorf(t.pos, "unexpected '{': expected a keyword before it")
			p.block(s, depth, t.pos) // read and drop, to stay in step with the braces
		default:
			n := p.statement(s, depth)
			if isInclude(n.name) && !n.hasBlock {
				nodes = append(nodes, p.include(n, depth)...)
				continue
			}
			nodes = append(nodes, n)
		}
	}
}

// statement reads `keyword args...` and the block that follows it, if any. A block may open
// on the same line or, as keepalived allows, on a following line.
func (p *parser) statement(s *tokenStream, depth int) *node {
	kw := s.next()
	n := &node{name: kw.text, pos: kw.pos}
	for s.peek().isValue() {
		n.args = append(n.args, s.next())
	}
	if s.peek().kind == tokNewline {
		save := s.i
		s.skipNewlines()
		if s.peek().kind != tokLBrace {
			s.i = save
		}
	}
	if t := s.peek(); t.kind == tokLBrace {
		s.next()
		n.hasBlock, n.open = true, t.pos
		n.children = p.block(s, depth, t.pos)
	}
	return n
}

// block reads the body of a block whose '{' (at open) was just consumed.
func (p *parser) block(s *tokenStream, depth int, open Pos) []*node {
	if depth+1 < maxBlockDepth {
		return p.statements(s, depth+1, &open)
	}
	p.errorf(open, "blocks nested more than %d deep: expected a '}' sooner", maxBlockDepth)
	// Skip to the matching brace without recursing, so depth stays bounded.
	level := 1
	for {
		switch s.next().kind {
		case tokEOF:
			p.errorf(open, "unclosed '{': expected a matching '}' before the end of the file")
			return nil
		case tokLBrace:
			level++
		case tokRBrace:
			level--
			if level == 0 {
				return nil
			}
		}
	}
}

// isInclude reports whether name is include or one of its variants (includer, includem, ...).
func isInclude(name string) bool {
	switch name {
	case "include", "includer", "includem", "includew", "includeb", "includea":
		return true
	}
	return false
}

// include expands an include statement at n into the statements of the files it names.
//
// Patterns are shell globs (no csh {a,b} braces) relative to the including file's directory.
// A pattern that matches nothing is a warning, for the checked variants (includer, includea,
// ...) too, because `keepalived -t` accepts such a file. An included file must balance its own
// braces.
func (p *parser) include(n *node, depth int) []*node {
	if len(n.args) == 0 {
		p.errorf(n.pos, "%s needs a file name or glob pattern", n.name)
		return nil
	}
	if len(n.args) > 1 {
		p.warnf(n.args[1].pos, "%s takes one pattern; %s and after ignored", n.name, n.args[1].describe())
	}
	pattern := n.args[0].text
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(n.pos.File), pattern)
	}
	if len(p.stack) > maxIncludeDepth {
		p.errorf(n.pos, "includes nested more than %d deep: expected fewer levels of include", maxIncludeDepth)
		return nil
	}
	matches, err := p.fs.Glob(pattern)
	if err != nil {
		p.errorf(n.args[0].pos, "bad include pattern %s: %v", quote(n.args[0].text), err)
		return nil
	}
	sort.Strings(matches)
	if len(matches) == 0 {
		if n.name == "include" {
			p.warnf(n.args[0].pos, "include %s matched no file", quote(n.args[0].text))
		} else {
			// keepalived -t reports this but still accepts the file.
			p.warnf(n.args[0].pos, "%s %s matched no file", n.name, quote(n.args[0].text))
		}
		return nil
	}
	var nodes []*node
	for _, m := range matches {
		if p.reading(m) {
			p.errorf(n.pos, "include cycle: %s is already being read (%s)", m, strings.Join(p.stack, " -> "))
			continue
		}
		if p.included >= maxIncludedFiles {
			p.errorf(n.pos, "more than %d included files: expected fewer", maxIncludedFiles)
			return nodes
		}
		p.included++
		src, err := p.fs.ReadFile(m)
		if err != nil {
			p.errorf(n.args[0].pos, "read included file %s: %v", m, unwrapPathError(err))
			continue
		}
		nodes = append(nodes, p.parseFile(m, src)...)
	}
	return nodes
}

func (p *parser) reading(file string) bool {
	for _, f := range p.stack {
		if filepath.Clean(f) == filepath.Clean(file) {
			return true
		}
	}
	return false
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// quote renders s for messages: in double quotes, with control and invalid bytes escaped.
func quote(s string) string { return strconv.Quote(s) }
