package selector

import (
	"regexp"
	"strings"
	"sync"
)

// matcher caches compiled fnmatch patterns. Safe for concurrent use.
type matcher struct {
	mu sync.Mutex
	re map[string]*regexp.Regexp
}

// match reports whether name matches the shell pattern pat exactly as
// Python's fnmatch.fnmatch does on POSIX (case-sensitive; "*" and "?" also
// match "/" and "."; "[...]" sets with "!" negation; an unclosed "[" is a
// literal).
func (m *matcher) match(name, pat string) bool {
	if !strings.ContainsAny(pat, "*?[") {
		return name == pat
	}
	if pat == "*" {
		return true
	}
	m.mu.Lock()
	re, ok := m.re[pat]
	if !ok {
		if m.re == nil {
			m.re = map[string]*regexp.Regexp{}
		}
		var err error
		re, err = regexp.Compile(translateFnmatch(pat))
		if err != nil {
			re = nil // Python would raise re.error; treat as no match
		}
		m.re[pat] = re
	}
	m.mu.Unlock()
	return re != nil && re.MatchString(name)
}

// translateFnmatch ports CPython 3.11's fnmatch.translate to RE2 syntax. The
// atomic groups CPython uses only prevent backtracking, which RE2 never
// does, so plain ".*" has the same meaning.
func translateFnmatch(pat string) string {
	p := []rune(pat)
	var b strings.Builder
	b.WriteString(`\A(?s:`)
	i, n := 0, len(p)
	lastStar := false
	for i < n {
		c := p[i]
		i++
		if c == '*' {
			if !lastStar {
				b.WriteString(".*")
			}
			lastStar = true
			continue
		}
		lastStar = false
		switch c {
		case '?':
			b.WriteString(".")
		case '[':
			j := i
			if j < n && p[j] == '!' {
				j++
			}
			if j < n && p[j] == ']' {
				j++
			}
			for j < n && p[j] != ']' {
				j++
			}
			if j >= n {
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(translateSet(p, i, j))
			i = j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`)\z`)
	return b.String()
}

// translateSet translates the set p[i:j] (between "[" and "]").
func translateSet(p []rune, i, j int) string {
	stuffRunes := p[i:j]
	var chunks [][]rune
	if !containsRune(stuffRunes, '-') {
		chunks = [][]rune{stuffRunes}
	} else {
		k := i + 1
		if p[i] == '!' {
			k = i + 2
		}
		for {
			k = indexRune(p, '-', k, j)
			if k < 0 {
				break
			}
			chunks = append(chunks, p[i:k])
			i = k + 1
			k += 3
		}
		chunk := p[i:j]
		if len(chunk) > 0 {
			chunks = append(chunks, chunk)
		} else {
			last := len(chunks) - 1
			chunks[last] = append(append([]rune{}, chunks[last]...), '-')
		}
		for k := len(chunks) - 1; k > 0; k-- {
			prev, cur := chunks[k-1], chunks[k]
			if len(prev) > 0 && len(cur) > 0 && prev[len(prev)-1] > cur[0] {
				merged := append(append([]rune{}, prev[:len(prev)-1]...), cur[1:]...)
				chunks[k-1] = merged
				chunks = append(chunks[:k], chunks[k+1:]...)
			}
		}
	}
	// Each chunk's characters are literal; consecutive chunks are joined by
	// a range from the last character of one to the first of the next.
	var items []setItem
	negate := false
	for ci, ch := range chunks {
		for ri, r := range ch {
			switch {
			case ci == 0 && ri == 0 && r == '!':
				negate = true
			case ri == 0 && ci > 0 && len(items) > 0 && len(chunks[ci-1]) > 0 && !(ci == 1 && negate && len(chunks[0]) == 1):
				items[len(items)-1].hi = r
			case ri == 0 && ci > 0:
				items = append(items, setItem{lo: '-', hi: '-'}, setItem{lo: r, hi: r})
			default:
				items = append(items, setItem{lo: r, hi: r})
			}
		}
	}
	if len(items) == 0 {
		if negate {
			return "." // "[!]" after empty-range removal: any character
		}
		return `[^\x00-\x{10FFFF}]` // empty set: never matches
	}
	var b strings.Builder
	b.WriteString("[")
	if negate {
		b.WriteString("^")
	}
	for _, it := range items {
		if it.lo > it.hi {
			continue
		}
		b.WriteString(quoteSetRune(it.lo))
		if it.hi != it.lo {
			b.WriteString("-")
			b.WriteString(quoteSetRune(it.hi))
		}
	}
	b.WriteString("]")
	return b.String()
}

type setItem struct{ lo, hi rune }

func quoteSetRune(r rune) string {
	if r < 0x80 && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
		return `\x{` + strings.ToUpper(string("0123456789abcdef"[r>>4])+string("0123456789abcdef"[r&15])) + `}`
	}
	return string(r)
}

func containsRune(s []rune, r rune) bool { return indexRune(s, r, 0, len(s)) >= 0 }

func indexRune(s []rune, r rune, from, to int) int {
	for k := from; k < to && k < len(s); k++ {
		if k >= 0 && s[k] == r {
			return k
		}
	}
	return -1
}
