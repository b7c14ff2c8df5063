package config

// The lexer follows keepalived 2.2's reader (lib/parser.c: decomment, read_line, alloc_strvec):
//
//   - '#' and '!' start a comment anywhere outside a quoted string; "\#" and "\!" are the literal
//     characters.
//   - "..." is one token with the quotes removed and nothing inside it interpreted; it ends at
//     the next '"' on the same line. A '"' also ends an unquoted word, so a"b" is two tokens.
//     Single quotes are ordinary characters, as in keepalived's general (non-script) reader.
//   - '{' and '}' are tokens of their own even when glued to a word ("80{", "}}").
//   - Statements end at a newline or a brace; newlines are tokens so the parser can tell.
//   - A backslash immediately before the line end joins the next line to this one (keepalived
//     itself only does this in $NAME= definitions); the join separates tokens like a space.
//   - Spaces, tabs, CR, VT and FF separate tokens; a non-breaking space (U+00A0, usually pasted
//     from a web page) does too, with a warning, because keepalived would glue it into a word.

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokNewline
	tokWord   // an unquoted word
	tokString // a "quoted string", quotes removed
	tokLBrace
	tokRBrace
)

type token struct {
	kind tokenKind
	text string
	pos  Pos
}

// isValue reports whether t can be a keyword or an argument.
func (t token) isValue() bool { return t.kind == tokWord || t.kind == tokString }

// describe names t for error messages.
func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of file"
	case tokNewline:
		return "end of line"
	case tokLBrace:
		return "'{'"
	case tokRBrace:
		return "'}'"
	}
	return quote(t.text)
}

type lexer struct {
	file  string
	src   []byte
	off   int
	line  int
	col   int
	toks  []token
	errs  ErrorList
	warns []Warning

	nbspLine int // last line warned about a non-breaking space, so a line warns once
}

// lex splits src into tokens. It never stops early: problems are recorded and lexing goes on.
func lex(file string, src []byte) ([]token, ErrorList, []Warning) {
	l := &lexer{file: file, src: src, line: 1, col: 1}
	l.run()
	return l.toks, l.errs, l.warns
}

func (l *lexer) pos() Pos { return Pos{File: l.file, Line: l.line, Col: l.col} }

// advance moves past n bytes that contain no newline.
func (l *lexer) advance(n int) {
	l.off += n
	l.col += n
}

func (l *lexer) newline() {
	l.off++
	l.line++
	l.col = 1
}

func (l *lexer) peek(i int) byte {
	if l.off+i < len(l.src) {
		return l.src[l.off+i]
	}
	return 0
}

func (l *lexer) emit(kind tokenKind, text string, pos Pos) {
	l.toks = append(l.toks, token{kind: kind, text: text, pos: pos})
}

func (l *lexer) errorf(pos Pos, format string, args ...any) {
	l.errs = append(l.errs, &Error{Pos: pos, Msg: sprintf(format, args...)})
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

func (l *lexer) atNBSP() bool { return l.peek(0) == 0xc2 && l.peek(1) == 0xa0 }

// atContinuation reports whether a backslash at the current offset ends the line.
func (l *lexer) atContinuation() (int, bool) {
	if l.peek(0) != '\\' {
		return 0, false
	}
	if l.peek(1) == '\n' {
		return 1, true
	}
	if l.peek(1) == '\r' && l.peek(2) == '\n' {
		return 2, true
	}
	return 0, false
}

func (l *lexer) run() {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == '\n':
			l.emit(tokNewline, "", l.pos())
			l.newline()
		case isSpace(c):
			l.advance(1)
		case l.atNBSP():
			l.warnNBSP()
			l.advance(2)
		case c == '#' || c == '!':
			l.skipComment()
		case c == '{':
			l.emit(tokLBrace, "{", l.pos())
			l.advance(1)
		case c == '}':
			l.emit(tokRBrace, "}", l.pos())
			l.advance(1)
		case c == '"':
			l.quoted()
		default:
			if n, ok := l.atContinuation(); ok {
				l.advance(n)
				l.newline()
				continue
			}
			l.word()
		}
	}
	l.emit(tokEOF, "", l.pos())
}

func (l *lexer) warnNBSP() {
	if l.nbspLine == l.line {
		return
	}
	l.nbspLine = l.line
	l.warns = append(l.warns, Warning{Pos: l.pos(),
		Msg: "non-breaking space (U+00A0) treated as a space; keepalived would make it part of a word"})
}

func (l *lexer) skipComment() {
	for l.off < len(l.src) && l.src[l.off] != '\n' {
		l.advance(1)
	}
}

func (l *lexer) quoted() {
	start := l.pos()
	l.advance(1) // opening quote
	from := l.off
	for l.off < len(l.src) {
		switch l.src[l.off] {
		case '"':
			text := string(l.src[from:l.off])
			l.advance(1)
			l.emit(tokString, text, start)
			return
		case '\n':
			l.errorf(start, "unterminated quoted string: expected a closing '\"' before the end of the line")
			l.emit(tokString, string(l.src[from:l.off]), start)
			return
		}
		l.advance(1)
	}
	l.errorf(start, "unterminated quoted string: expected a closing '\"' before the end of the file")
	l.emit(tokString, string(l.src[from:l.off]), start)
}

func (l *lexer) word() {
	start := l.pos()
	var b []byte
	for l.off < len(l.src) {
		c := l.src[l.off]
		if c == '\n' || isSpace(c) || c == '{' || c == '}' || c == '"' || c == '#' || c == '!' || l.atNBSP() {
			break
		}
		if c == '\\' {
			if _, ok := l.atContinuation(); ok {
				break
			}
			if n := l.peek(1); n == '#' || n == '!' {
				b = append(b, n)
				l.advance(2)
				continue
			}
		}
		b = append(b, c)
		l.advance(1)
	}
	l.emit(tokWord, string(b), start)
}
