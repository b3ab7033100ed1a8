package selector

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/dbtorch/dbtorch/internal/walk"
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
	var (
		kids   func(dir string) []string
		isDir  func(p string) bool
		exists func(p string) bool
	)
	if e.fsys != nil {
		kids, isDir, exists = fsTree(e.fsys)
	} else {
		tree := e.projectTree()
		k := e.files.kids
		kids = func(dir string) []string { return k[dir] }
		isDir = func(p string) bool { return len(k[p]) > 0 || p == "." }
		exists = func(p string) bool { return tree[p] }
	}
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
				walk.Depth([]string{dir}, next, func(d string, stack []string) []string {
					for _, k := range kids(d) {
						if isDir(k) {
							stack = append(stack, k)
						}
					}
					return stack
				})
			case part == "..":
				// pathlib keeps ".." unresolved; such paths never equal a
				// node's path.
			case strings.ContainsAny(part, "*?["):
				for _, k := range kids(dir) {
					if (last || isDir(k)) && e.match.match(k[strings.LastIndexByte(k, '/')+1:], part) {
						next[k] = true
					}
				}
			default:
				k := joinPath(dir, part)
				if exists(k) && (last || isDir(k)) {
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

// fsTree lists a real project directory lazily, for one glob.
func fsTree(fsys fs.FS) (kids func(string) []string, isDir, exists func(string) bool) {
	listed := map[string][]string{}
	dirs := map[string]bool{".": true}
	kids = func(dir string) []string {
		if k, ok := listed[dir]; ok {
			return k
		}
		entries, _ := fs.ReadDir(fsys, dir)
		var out []string
		for _, e := range entries {
			p := joinPath(dir, e.Name())
			out = append(out, p)
			if e.IsDir() {
				dirs[p] = true
			} else if e.Type()&fs.ModeSymlink != 0 {
				if fi, err := fs.Stat(fsys, p); err == nil && fi.IsDir() {
					dirs[p] = true
				}
			}
		}
		listed[dir] = out
		return out
	}
	stat := func(p string) (fs.FileInfo, error) { return fs.Stat(fsys, p) }
	isDir = func(p string) bool {
		if dirs[p] {
			return true
		}
		fi, err := stat(p)
		return err == nil && fi.IsDir()
	}
	exists = func(p string) bool {
		_, err := stat(p)
		return err == nil
	}
	return kids, isDir, exists
}
