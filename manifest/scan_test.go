package manifest

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// TestScannerMatchesEncodingJSON decodes random strings and values with the
// scanner and with encoding/json: both accept the same inputs and give the
// same values.
func TestScannerMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	alphabet := []string{"a", "b", "é", "日", "\\n", "\\\"", "\\\\", "\\u00e9", "\\ud83d\\ude00", "\\ud83d", "\"", "\\", "\x01", "\t", " ", "\\x", "{", "}", "[", "]", ",", ":", "1", "-", ".", "e", "true", "null", "\xff"}
	for i := 0; i < 20000; i++ {
		var b []byte
		if r.Intn(2) == 0 {
			b = append(b, '"')
		}
		for n := r.Intn(40); n > 0; n-- {
			b = append(b, alphabet[r.Intn(len(alphabet))]...)
		}
		if r.Intn(3) > 0 {
			b = append(b, '"')
		}
		var want any
		wantErr := json.Unmarshal(b, &want)
		s := &scanner{data: b}
		got, err := s.value()
		if err == nil {
			err = s.end()
		}
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("input %q: scanner err %v, encoding/json err %v", b, err, wantErr)
		}
		if err == nil {
			// encoding/json replaces invalid UTF-8 and lone surrogates
			// with U+FFFD; compare where neither happens.
			if utf8.Valid(b) && !bytes.Contains(b, []byte(`\ud83d"`)) && !bytes.Contains(b, []byte(`\ud83d\u00`)) {
				require.Equal(t, want, got, "input %q", b)
			}
		}
	}
}

func TestPlain8(t *testing.T) {
	for c := 0; c < 256; c++ {
		w := uint64(0x6161616161616161) // "aaaaaaaa"
		for pos := 0; pos < 8; pos++ {
			x := w&^(0xff<<(8*pos)) | uint64(c)<<(8*pos)
			special := c == '"' || c == '\\' || c < 0x20
			require.Equal(t, !special, plain8(x), "byte %#x at %d", c, pos)
		}
	}
}
