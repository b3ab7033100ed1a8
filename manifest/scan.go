package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a small validating JSON reader over a byte slice. It decodes
// only what the caller asks for and skips the rest without allocating,
// which is what makes loading a 100 MB manifest fast: most of a manifest's
// bytes (descriptions, columns, docs) are never needed.
type scanner struct {
	data []byte
	pos  int
	base int // offset of data within the whole file, for error messages
}

// scanError is a JSON syntax error at a byte offset of the file.
type scanError struct {
	Offset int
	Msg    string
}

func (e *scanError) Error() string { return e.Msg }

func (s *scanner) fail(format string, args ...any) error {
	return &scanError{Offset: s.base + s.pos, Msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\n', '\r', '\t':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it, or 0 at EOF.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) describe() string {
	switch c := s.peek(); {
	case c == 0:
		return "end of input"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	default:
		return "a number"
	}
}

// end checks that only whitespace is left.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return s.fail("invalid character %q after top-level value", s.data[s.pos])
	}
	return nil
}

// object iterates over an object's members. fn must consume the value. A
// non-object value is a type error (use objectOrSkip to be lenient).
func (s *scanner) object(fn func(key []byte) error) error {
	if s.peek() != '{' {
		return s.fail("got %s, want an object", s.describe())
	}
	s.pos++
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.fail("invalid character %q, want an object key", s.at())
		}
		key, err := s.strBytes()
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.fail("invalid character %q after object key", s.at())
		}
		s.pos++
		s.ws()
		if err := fn(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("invalid character %q after object member", s.at())
		}
	}
}

// array iterates over an array's elements; fn must consume each.
func (s *scanner) array(fn func() error) error {
	if s.peek() != '[' {
		return s.fail("got %s, want an array", s.describe())
	}
	s.pos++
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		s.ws()
		if err := fn(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("invalid character %q after array element", s.at())
		}
	}
}

func (s *scanner) at() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// skip consumes and validates one value of any type.
func (s *scanner) skip() error {
	switch s.peek() {
	case '{':
		return s.object(func([]byte) error { return s.skip() })
	case '[':
		return s.array(s.skip)
	case '"':
		return s.skipString()
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	case 0:
		return s.fail("unexpected end of input")
	default:
		_, err := s.number()
		return err
	}
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return s.fail("invalid literal, want %s", lit)
	}
	s.pos += len(lit)
	return nil
}

// null consumes a null if one is next.
func (s *scanner) null() bool {
	if s.peek() == 'n' && bytes.HasPrefix(s.data[s.pos:], []byte("null")) {
		s.pos += 4
		return true
	}
	return false
}

// number consumes a JSON number and returns its text.
func (s *scanner) number() ([]byte, error) {
	start := s.pos
	d := s.data
	i := s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(d) && d[i] == '0' {
		i++
	} else if digits() == 0 {
		s.pos = i
		return nil, s.fail("invalid character %q looking for a value", s.at())
	}
	if i < len(d) && d[i] == '.' {
		i++
		if digits() == 0 {
			s.pos = i
			return nil, s.fail("invalid number: no digits after decimal point")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if digits() == 0 {
			s.pos = i
			return nil, s.fail("invalid number: no digits in exponent")
		}
	}
	s.pos = i
	return d[start:i], nil
}

// scanString finds the end of the string starting at s.pos (a quote),
// validating it, and reports whether it contains escapes. It leaves s.pos
// after the closing quote and returns the content's bounds.
func (s *scanner) scanString() (start, end int, escaped bool, err error) {
	d := s.data
	i := s.pos + 1
	start = i
	for i < len(d) {
		// Skip 8 plain bytes at a time: no quote, backslash or control
		// character among them.
		for i+8 <= len(d) && plain8(binary.LittleEndian.Uint64(d[i:])) {
			i += 8
		}
		if i >= len(d) {
			break
		}
		c := d[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return start, i, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				s.pos = i
				return 0, 0, false, s.fail("unexpected end of input in string escape")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex4(d[i+2:i+6]) {
					s.pos = i
					return 0, 0, false, s.fail("invalid \\u escape in string")
				}
				i += 6
			default:
				s.pos = i
				return 0, 0, false, s.fail("invalid escape %q in string", d[i+1])
			}
		case c < 0x20:
			s.pos = i
			return 0, 0, false, s.fail("invalid control character %#x in string", c)
		default:
			i++
		}
	}
	s.pos = i
	return 0, 0, false, s.fail("unexpected end of input in string")
}

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// plain8 reports whether none of the 8 bytes in w is a quote, a backslash
// or a control character (< 0x20), with the classic SWAR tests.
func plain8(w uint64) bool {
	less := (w - lo8*0x20) & ^w & hi8
	q := w ^ (lo8 * '"')
	quote := (q - lo8) & ^q & hi8
	b := w ^ (lo8 * '\\')
	slash := (b - lo8) & ^b & hi8
	return less|quote|slash == 0
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *scanner) skipString() error {
	_, _, _, err := s.scanString()
	return err
}

// strBytes reads a string. Without escapes the result aliases the input.
func (s *scanner) strBytes() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.fail("got %s, want a string", s.describe())
	}
	start, end, escaped, err := s.scanString()
	if err != nil {
		return nil, err
	}
	if !escaped {
		return s.data[start:end], nil
	}
	return unescape(s.data[start:end]), nil
}

// str reads a string; null and values of other types give "" (lenient).
func (s *scanner) str() (string, error) {
	if s.peek() != '"' {
		return "", s.skip()
	}
	b, err := s.strBytes()
	return string(b), err
}

// strList reads an array of strings; null, other types and non-string
// elements are skipped (lenient).
func (s *scanner) strList() ([]string, error) {
	if s.peek() != '[' {
		return nil, s.skip()
	}
	out := []string{}
	err := s.array(func() error {
		if s.peek() != '"' {
			return s.skip()
		}
		b, err := s.strBytes()
		out = append(out, string(b))
		return err
	})
	return out, err
}

// boolean reads true/false; other values give false (lenient).
func (s *scanner) boolean() (bool, error) {
	switch s.peek() {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	}
	return false, s.skip()
}

// optInt reads an integer; null and other types give nil (lenient).
func (s *scanner) optInt() (*int, error) {
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		return nil, s.skip()
	}
	text, err := s.number()
	if err != nil {
		return nil, err
	}
	f, perr := strconv.ParseFloat(string(text), 64)
	if perr != nil {
		return nil, nil
	}
	n := int(f)
	return &n, nil
}

// value decodes any value into the types encoding/json uses for any:
// map[string]any, []any, string, float64, bool, nil.
func (s *scanner) value() (any, error) {
	switch s.peek() {
	case '{':
		m := map[string]any{}
		err := s.object(func(key []byte) error {
			v, err := s.value()
			m[string(key)] = v
			return err
		})
		return m, err
	case '[':
		a := []any{}
		err := s.array(func() error {
			v, err := s.value()
			a = append(a, v)
			return err
		})
		return a, err
	case '"':
		b, err := s.strBytes()
		return string(b), err
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	case 'n':
		return nil, s.literal("null")
	case 0:
		return nil, s.fail("unexpected end of input")
	}
	text, err := s.number()
	if err != nil {
		return nil, err
	}
	f, perr := strconv.ParseFloat(string(text), 64)
	if perr != nil {
		var ne *strconv.NumError
		if errors.As(perr, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return f, nil // ±Inf, as encoding/json would reject; keep lenient
		}
		return nil, s.fail("invalid number %q", text)
	}
	return f, nil
}

// objectMap decodes an object into map[string]any; null and other types
// give nil (lenient).
func (s *scanner) objectMap() (map[string]any, error) {
	if s.peek() != '{' {
		return nil, s.skip()
	}
	v, err := s.value()
	m, _ := v.(map[string]any)
	return m, err
}

// unescape decodes the content of a validated JSON string with escapes.
func unescape(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch b[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := rune(hex4(b[i+2 : i+6]))
			i += 6
			if utf16.IsSurrogate(r) && i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
				if r2 := rune(hex4(b[i+2 : i+6])); utf16.DecodeRune(r, r2) != utf8.RuneError {
					r = utf16.DecodeRune(r, r2)
					i += 6
				} else {
					r = utf8.RuneError
				}
			} else if utf16.IsSurrogate(r) {
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, b[i+1])
		}
		i += 2
	}
	return out
}

func hex4(b []byte) int {
	n := 0
	for _, c := range b {
		n <<= 4
		switch {
		case c >= '0' && c <= '9':
			n |= int(c - '0')
		case c >= 'a' && c <= 'f':
			n |= int(c-'a') + 10
		default:
			n |= int(c-'A') + 10
		}
	}
	return n
}

// spanEnd returns the end of the value starting at data[i] ('{' or '['),
// without validating, by counting brackets outside strings. It returns -1
// if the value is not closed. Used to split a section into entries that
// are then decoded (and validated) in parallel.
func spanEnd(data []byte, i int) int {
	depth := 0
	for i < len(data) {
		switch data[i] {
		case '"':
			i++
			for {
				j := bytes.IndexByte(data[i:], '"')
				if j < 0 {
					return -1
				}
				i += j
				// Count the backslashes before the quote.
				k := i - 1
				for k >= 0 && data[k] == '\\' {
					k--
				}
				i++
				if (i-2-k)%2 == 0 {
					break
				}
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return -1
}
