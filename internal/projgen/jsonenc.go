package projgen

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// obj is a JSON object whose keys keep their order, as dbt writes them.
type obj []field

// field is one key of an obj.
type field struct {
	k string
	v any
}

// encoder streams JSON the way Python's json.dumps writes it (", " and ": "
// separators, no HTML escaping), for the value types the manifest needs: nil,
// string, bool, int, float64, obj, []obj, []string and []any. It keeps the
// first write error and ignores later writes.
type encoder struct {
	w   *bufio.Writer
	buf []byte
	err error
}

func newEncoder(w io.Writer) *encoder {
	return &encoder{w: bufio.NewWriterSize(w, 1<<16)}
}

// raw writes s as is.
func (e *encoder) raw(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

// value writes v.
func (e *encoder) value(v any) {
	switch v := v.(type) {
	case nil:
		e.raw("null")
	case string:
		e.str(v)
	case bool:
		e.raw(strconv.FormatBool(v))
	case int:
		e.raw(strconv.Itoa(v))
	case float64:
		e.raw(strconv.FormatFloat(v, 'f', -1, 64))
	case obj:
		e.raw("{")
		for i, f := range v {
			if i > 0 {
				e.raw(", ")
			}
			e.str(f.k)
			e.raw(": ")
			e.value(f.v)
		}
		e.raw("}")
	case []obj:
		array(e, v, func(x obj) { e.value(x) })
	case []string:
		array(e, v, e.str)
	case []any:
		array(e, v, e.value)
	default:
		if e.err == nil {
			e.err = fmt.Errorf("projgen: cannot encode %T", v)
		}
	}
}

// str writes s as a JSON string.
// array writes xs as a JSON array, each element by each.
func array[T any](e *encoder, xs []T, each func(T)) {
	e.raw("[")
	for i, x := range xs {
		if i > 0 {
			e.raw(", ")
		}
		each(x)
	}
	e.raw("]")
}

func (e *encoder) str(s string) {
	const hex = "0123456789abcdef"
	b := append(e.buf[:0], '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
	}
	b = append(b, '"')
	e.buf = b
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

// flush writes out what is buffered and returns the first error.
func (e *encoder) flush() error {
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}
