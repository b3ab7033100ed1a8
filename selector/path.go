package selector

import (
	"errors"
	"strings"

	"github.com/dbtorch/dbtorch/manifest"
)

// projectTree returns the root project's files and directories as the
// manifest shows them: every original_file_path and patch_path of the root
// package's nodes, and all their parent directories ("." included).
func (n *Native) projectTree() map[string]bool {
	n.files.once.Do(func() {
		paths := map[string]bool{".": true}
		root := n.d.m.Metadata.ProjectName
		addFile := func(p string) {
			p = cleanPath(p)
			for p != "." && !paths[p] {
				paths[p] = true
				p = pathParent(p)
			}
		}
		n.d.m.All(func(node *manifest.Node) bool {
			if root != "" && node.PackageName != root {
				return true
			}
			if node.OriginalFilePath != "" {
				addFile(node.OriginalFilePath)
			}
			if _, p, ok := strings.Cut(node.PatchPath, "://"); ok {
				addFile(p)
			}
			return true
		})
		for _, m := range n.d.m.Macros {
			if root == "" || m.PackageName == root {
				if m.OriginalFilePath != "" {
					addFile(m.OriginalFilePath)
				}
			}
		}
		n.files.paths = paths
		n.files.kids = map[string][]string{}
		for p := range paths {
			if p != "." {
				n.files.kids[pathParent(p)] = append(n.files.kids[pathParent(p)], p)
			}
		}
	})
	return n.files.paths
}

// globPaths is pathlib's Path.glob(pattern) (CPython 3.11, POSIX) over the
// project tree, returning the matching paths relative to the root.
func (e *evaluator) globPaths(pattern string) (map[string]bool, error) {
	if pattern == "" {
		return nil, errors.New("unacceptable pattern: ''")
	}
	if strings.HasPrefix(pattern, "/") {
		return nil, errors.New("non-relative patterns are unsupported")
	}
	var parts []string
	for _, p := range strings.Split(pattern, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return nil, errors.New("unacceptable pattern")
	}
	for _, p := range parts {
		if p != "**" && strings.Contains(p, "**") {
			return nil, errors.New("invalid pattern: '**' can only be an entire path component")
		}
	}
	tree := e.projectTree()
	kids := e.files.kids
	isDir := func(p string) bool { return len(kids[p]) > 0 || p == "." }
	cur := map[string]bool{".": true}
	for i, part := range parts {
		last := i == len(parts)-1
		next := map[string]bool{}
		for dir := range cur {
			if !isDir(dir) {
				continue
			}
			switch {
			case part == "**":
				// the directory itself and every directory below it
				stack := []string{dir}
				for len(stack) > 0 {
					d := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					if next[d] {
						continue
					}
					next[d] = true
					for _, k := range kids[d] {
						if isDir(k) {
							stack = append(stack, k)
						}
					}
				}
			case part == "..":
				// pathlib keeps ".." unresolved; such paths never equal a
				// node's path.
			case strings.ContainsAny(part, "*?["):
				for _, k := range kids[dir] {
					if (last || isDir(k)) && e.match.match(k[strings.LastIndexByte(k, '/')+1:], part) {
						next[k] = true
					}
				}
			default:
				k := joinPath(dir, part)
				if tree[k] && (last || isDir(k)) {
					next[k] = true
				}
			}
		}
		cur = next
	}
	return cur, nil
}

func joinPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
