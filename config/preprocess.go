package config

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The preprocessor implements keepalived's line-level language (keepalived.conf(5), "ADVANCED
// CONFIGURATION"), before the lexer sees a line:
//
//   - "@ID rest" keeps rest only when ID is the config id; "@^ID rest" only when it is not.
//   - "$NAME=VALUE" defines a parameter; a VALUE ending in '\' continues on the next lines,
//     which makes a multi-line definition (nesting allowed). Definitions hold across includes.
//   - "$NAME" followed by a space or the line end, and "${NAME}" anywhere, are replaced by the
//     value, recursively, at use time; an undefined parameter is left as written.
//     ${_PWD}, ${_INSTANCE}, ${_RANDOM [MIN [MAX]]}, ${_HASH} and ${_BANG} are predefined.
//   - "~SEQ(var, [start, [step,]] end) rest", "~SEQx(...)" (hex) and "~LST(var, v1, v2...)" or
//     "~LST({a, b}, {1, 2}, ...)" repeat rest with var set to each value.
//
// Every generated line keeps the line number of the source line it came from, and its columns
// up to the first substitution.

// Limits on what the preprocessor may generate, against parameter and sequence bombs.
const (
	maxExpandDepth = 32
	// maxExpandedLine bounds one line after substitution (a multi-line parameter included).
	maxExpandedLine = 1 << 20
)

// Output limits; variables so the fuzzer can lower them. maxExpandWork bounds the bytes all
// substitutions produce in total, so a parameter doubling itself 32 times stops early.
var (
	maxOutputLines = 4 << 20
	maxOutputBytes = 64 << 20
	maxSeqValues   = 1 << 20
	maxExpandWork  = 256 << 20
)

// Options select what Parse does with keepalived's command-line dependent constructs.
type Options struct {
	// ConfigID selects @ID lines (keepalived -i/--config-id). Empty means keepalived's default:
	// the host name up to its first dot.
	ConfigID string
	// Instance is ${_INSTANCE}; empty means the host name.
	Instance string
}

func (o Options) withDefaults() Options {
	host, _ := os.Hostname()
	if o.ConfigID == "" {
		o.ConfigID, _, _ = strings.Cut(host, ".")
	}
	if o.Instance == "" {
		o.Instance = host
	}
	return o
}

type preprocessor struct {
	opts   Options
	params map[string]string
	errs   ErrorList
	lines  int
	bytes  int
	work   int
	full   bool // an output limit was hit; stop generating
}

type outLine struct {
	text string
	line int // source line
}

func newPreprocessor(opts Options) *preprocessor {
	return &preprocessor{opts: opts.withDefaults(), params: map[string]string{}}
}

// process turns src into preprocessed text and, for each output line, its source line.
func (pp *preprocessor) process(file string, src []byte) (string, []int) {
	raw := strings.Split(string(src), "\n")
	var out []outLine
	pwd := filepath.Dir(file)
	if abs, err := filepath.Abs(pwd); err == nil {
		pwd = abs
	}
	for i := 0; i < len(raw); i++ {
		line := i + 1
		text := strings.TrimSuffix(raw[i], "\r")
		// A multi-line definition (perhaps behind @ID): collect its lines raw, to be expanded
		// at use time; one whose @ID does not match is skipped whole.
		defText := text
		isCond, keep := pp.conditional(text)
		if isCond {
			t := strings.TrimLeft(text, " \t")
			if end := strings.IndexAny(t, " \t"); end >= 0 {
				defText = t[end:]
			}
		}
		if name, val, ok := definition(defText); ok && strings.HasSuffix(strings.TrimRight(val, " \t"), "\\") {
			if isCond && !keep {
				for i < len(raw)-1 && continues(raw[i]) {
					i++
				}
				continue
			}
			parts := []string{strings.TrimSuffix(strings.TrimRight(val, " \t"), "\\")}
			for i < len(raw)-1 && continues(raw[i]) {
				i++
				next := strings.TrimSuffix(raw[i], "\r")
				parts = append(parts, strings.TrimSuffix(strings.TrimRight(next, " \t"), "\\"))
			}
			pp.params[name] = strings.TrimSpace(strings.Join(nonEmpty(parts), "\n"))
			continue
		}
		out = pp.line(out, file, pwd, text, line, 0)
	}
	var b strings.Builder
	lines := make([]int, 0, len(out))
	for _, l := range out {
		b.WriteString(l.text)
		b.WriteByte('\n')
		lines = append(lines, l.line)
	}
	return b.String(), lines
}

func continues(s string) bool {
	return strings.HasSuffix(strings.TrimRight(strings.TrimSuffix(s, "\r"), " \t"), "\\")
}

func nonEmpty(parts []string) []string {
	var out []string
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out
}

func (pp *preprocessor) errorf(file string, line int, format string, args ...any) {
	if len(pp.errs) < maxErrors {
		pp.errs = append(pp.errs, &Error{Pos: Pos{File: file, Line: line, Col: 1}, Msg: sprintf(format, args...)})
	}
}

// definition reports whether text is "$NAME=VALUE" (only blanks before '$').
func definition(text string) (name, value string, ok bool) {
	t := strings.TrimLeft(text, " \t")
	if !strings.HasPrefix(t, "$") {
		return "", "", false
	}
	n := paramName(t[1:])
	if n == "" || len(t) <= 1+len(n) || t[1+len(n)] != '=' {
		return "", "", false
	}
	return n, t[2+len(n):], true
}

// paramName returns the longest parameter name at the start of s.
func paramName(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return s[:i]
	}
	return s
}

// conditional reports whether text starts with @ID or @^ID and, if so, whether to keep it.
func (pp *preprocessor) conditional(text string) (isCond, keep bool) {
	t := strings.TrimLeft(text, " \t")
	if !strings.HasPrefix(t, "@") {
		return false, true
	}
	word, _, _ := strings.Cut(strings.ReplaceAll(t[1:], "\t", " "), " ")
	if neg, ok := strings.CutPrefix(word, "^"); ok {
		return true, neg != pp.opts.ConfigID
	}
	return true, word == pp.opts.ConfigID
}

// line processes one logical line, appending what it generates to out.
func (pp *preprocessor) line(out []outLine, file, pwd, text string, line, depth int) []outLine {
	if pp.full {
		return out
	}
	if depth > maxExpandDepth {
		pp.errorf(file, line, "parameter or sequence expansion nested more than %d deep: expected a parameter that does not refer to itself", maxExpandDepth)
		pp.full = true
		return out
	}
	t := strings.TrimLeft(text, " \t")
	// Generated text keeps the columns of the source where it can: what is consumed (an @ID,
	// a ~SEQ(...)) becomes blanks, and a substituted line keeps its indentation.
	indent := text[:len(text)-len(t)]
	if isCond, keep := pp.conditional(t); isCond {
		if !keep {
			return out
		}
		end := strings.IndexAny(t, " \t")
		if end < 0 {
			return out
		}
		return pp.line(out, file, pwd, indent+strings.Repeat(" ", end)+t[end:], line, depth+1)
	}
	if name, val, ok := definition(t); ok {
		pp.params[name] = strings.TrimSpace(stripComment(val))
		return out
	}
	if strings.HasPrefix(t, "~SEQ") || strings.HasPrefix(t, "~LST") {
		return pp.sequence(out, file, pwd, indent, t, line, depth)
	}
	if strings.Contains(t, "$") {
		if s, changed := pp.substitute(t, pwd); changed {
			s = indent + s
			pp.work += len(s)
			if pp.work > maxExpandWork || len(s) > maxExpandedLine {
				pp.errorf(file, line, "parameter expansion too large (a line over %d bytes, or %d in all): expected parameters that do not grow without end", maxExpandedLine, maxExpandWork)
				pp.full = true
				return out
			}
			for _, l := range strings.Split(s, "\n") {
				out = pp.line(out, file, pwd, l, line, depth+1)
			}
			return out
		}
	}
	pp.lines++
	pp.bytes += len(text) + 1
	if pp.lines > maxOutputLines || pp.bytes > maxOutputBytes {
		pp.errorf(file, line, "expansion generates more than %d lines or %d bytes: expected a smaller configuration", maxOutputLines, maxOutputBytes)
		pp.full = true
		return out
	}
	return append(out, outLine{text: text, line: line})
}

// stripComment removes a trailing # or ! comment outside quotes.
func stripComment(s string) string {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inQuote = !inQuote
		case c == '\\' && i+1 < len(s):
			i++
		case !inQuote && (c == '#' || c == '!'):
			return s[:i]
		}
	}
	return s
}

// substitute replaces each defined $NAME (followed by a blank or the end) and ${NAME} once.
func (pp *preprocessor) substitute(s, pwd string) (string, bool) {
	var b strings.Builder
	changed := false
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end > 0 {
				if v, ok := pp.lookup(s[i+2:i+end], pwd); ok {
					b.WriteString(v)
					i += end
					changed = true
					continue
				}
			}
			b.WriteByte('$')
			continue
		}
		n := paramName(s[i+1:])
		after := i + 1 + len(n)
		if n != "" && (after == len(s) || s[after] == ' ' || s[after] == '\t' || s[after] == '\r') {
			if v, ok := pp.lookup(n, pwd); ok {
				b.WriteString(v)
				i = after - 1
				changed = true
				continue
			}
		}
		b.WriteByte('$')
	}
	return b.String(), changed
}

// lookup resolves a parameter reference (the text inside ${...}, or a bare name).
func (pp *preprocessor) lookup(ref, pwd string) (string, bool) {
	fields := strings.Fields(ref)
	if len(fields) == 0 {
		return "", false
	}
	switch fields[0] {
	case "_PWD":
		return pwd, len(fields) == 1
	case "_INSTANCE":
		return pp.opts.Instance, len(fields) == 1
	case "_HASH":
		return `\#`, len(fields) == 1
	case "_BANG":
		return `\!`, len(fields) == 1
	case "_RANDOM":
		lo, hi := int64(0), int64(32767)
		if len(fields) > 1 {
			v, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || v < 0 {
				return "", false
			}
			lo = v
		}
		if len(fields) > 2 {
			v, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil || v < lo {
				return "", false
			}
			hi = v
		}
		return strconv.FormatInt(lo+rand.Int64N(hi-lo+1), 10), true
	}
	if len(fields) != 1 || fields[0] != ref {
		return "", false
	}
	v, ok := pp.params[ref]
	return v, ok
}

// sequence expands a line starting with ~SEQ(...), ~SEQx(...) or ~LST(...).
func (pp *preprocessor) sequence(out []outLine, file, pwd, indent, t string, line, depth int) []outLine {
	open := strings.IndexByte(t, '(')
	kind := ""
	if open > 0 {
		kind = t[:open]
	}
	if kind != "~SEQ" && kind != "~SEQx" && kind != "~LST" {
		pp.errorf(file, line, "invalid sequence %s: expected ~SEQ(...), ~SEQx(...) or ~LST(...)", quote(firstWord(t)))
		return out
	}
	closeAt := matchParen(t, open)
	if closeAt < 0 {
		pp.errorf(file, line, "%s without a closing ')'", kind)
		return out
	}
	inner, _ := pp.substitute(t[open+1:closeAt], pwd)
	rest := strings.Repeat(" ", closeAt+1) + t[closeAt+1:]
	var vars []string
	var values [][]string
	if kind == "~LST" {
		var err string
		vars, values, err = parseList(inner)
		if err != "" {
			pp.errorf(file, line, "invalid ~LST(%s): %s", inner, err)
			return out
		}
	} else {
		v, vals, err := parseSeq(inner, kind == "~SEQx")
		if err != "" {
			pp.errorf(file, line, "invalid %s(%s): %s", kind, inner, err)
			return out
		}
		vars = []string{v}
		for _, x := range vals {
			values = append(values, []string{x})
		}
	}
	saved := map[string]*string{}
	for _, v := range vars {
		if old, ok := pp.params[v]; ok {
			saved[v] = &old
		} else {
			saved[v] = nil
		}
	}
	for _, vals := range values {
		for i, v := range vars {
			pp.params[v] = vals[i]
		}
		out = pp.line(out, file, pwd, indent+rest, line, depth+1)
		if pp.full {
			break
		}
	}
	for v, old := range saved {
		if old == nil {
			delete(pp.params, v)
		} else {
			pp.params[v] = *old
		}
	}
	return out
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

func matchParen(s string, open int) int {
	level := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			level++
		case ')':
			level--
			if level == 0 {
				return i
			}
		}
	}
	return -1
}

// parseSeq parses "var, [start, [step,]] end" into the values to use.
func parseSeq(inner string, hex bool) (string, []string, string) {
	parts := strings.Split(inner, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	if len(parts) < 2 || len(parts) > 4 {
		return "", nil, "expected (var, end), (var, start, end) or (var, start, step, end)"
	}
	name := strings.TrimPrefix(parts[0], "$")
	if name == "" || paramName(name) != name {
		return "", nil, sprintf("%s is not a parameter name", quote(parts[0]))
	}
	nums := make([]int64, len(parts)-1)
	for i, s := range parts[1:] {
		v, err := strconv.ParseInt(s, 0, 64)
		if err != nil || v > 1<<40 || v < -(1<<40) {
			return "", nil, sprintf("%s is not an integer", quote(s))
		}
		nums[i] = v
	}
	var start, step, end int64
	switch len(nums) {
	case 1:
		end = nums[0]
		start = 1
		if end < 0 {
			start = -1
		}
	case 2:
		start, end = nums[0], nums[1]
	case 3:
		start, step, end = nums[0], nums[1], nums[2]
		if step == 0 {
			return "", nil, "step 0 never ends: expected a non-zero step"
		}
	}
	if step == 0 {
		step = 1
		if end < start {
			step = -1
		}
	}
	var vals []string
	for v := start; step > 0 && v <= end || step < 0 && v >= end; v += step {
		if len(vals) >= maxSeqValues {
			return "", nil, sprintf("more than %d values: expected a shorter sequence", maxSeqValues)
		}
		if hex {
			vals = append(vals, strconv.FormatInt(v, 16))
		} else {
			vals = append(vals, strconv.FormatInt(v, 10))
		}
	}
	return name, vals, ""
}

// parseList parses "var, v1, v2..." or "{a, b}, {1, 2}, {3, 4}".
func parseList(inner string) ([]string, [][]string, string) {
	groups := splitTop(inner)
	if len(groups) < 2 {
		return nil, nil, "expected a variable and at least one value"
	}
	vars := braceItems(groups[0])
	for _, v := range vars {
		if n := strings.TrimPrefix(v, "$"); n == "" || paramName(n) != n {
			return nil, nil, sprintf("%s is not a parameter name", quote(v))
		}
	}
	for i := range vars {
		vars[i] = strings.TrimPrefix(vars[i], "$")
	}
	var values [][]string
	for _, g := range groups[1:] {
		items := braceItems(g)
		if len(items) != len(vars) {
			return nil, nil, sprintf("%s has %d values for %d variables", quote(strings.TrimSpace(g)), len(items), len(vars))
		}
		values = append(values, items)
	}
	return vars, values, ""
}

// splitTop splits s at commas outside braces.
func splitTop(s string) []string {
	var parts []string
	level, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			level++
		case '}':
			level--
		case ',':
			if level == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// braceItems returns the comma-separated items of "{a, b}", or the single item "a".
func braceItems(s string) []string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		var items []string
		for _, it := range strings.Split(s[1:len(s)-1], ",") {
			items = append(items, strings.TrimSpace(it))
		}
		return items
	}
	return []string{s}
}
