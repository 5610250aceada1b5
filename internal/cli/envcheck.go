package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// envName matches the names of Coffer's own and the S3 variables in source.
var envName = regexp.MustCompile(`"((?:COFFER|AWS)_[A-Z_]+)"`)

// EnvGaps compares a command's table with what its code and README say:
// unlisted are COFFER_/AWS_ names in the package's non-test sources (dir)
// that the table lacks; undocumented are table entries README does not
// mention. Tests call it; it reads files and changes nothing.
func EnvGaps(vars []EnvVar, dir, readme string, ignore ...string) (unlisted, undocumented []string, err error) {
	listed := map[string]bool{}
	for _, v := range vars {
		listed[v.Name] = true
	}
	for _, n := range ignore {
		listed[n] = true
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		for _, m := range envName.FindAllStringSubmatch(string(b), -1) {
			if !listed[m[1]] && !seen[m[1]] {
				seen[m[1]] = true
				unlisted = append(unlisted, m[1])
			}
		}
	}
	doc, err := os.ReadFile(readme)
	if err != nil {
		return nil, nil, err
	}
	for _, v := range vars {
		if !strings.Contains(string(doc), "`"+v.Name+"`") {
			undocumented = append(undocumented, v.Name)
		}
	}
	sort.Strings(unlisted)
	return unlisted, undocumented, nil
}
