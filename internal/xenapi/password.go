package xenapi

import (
	"fmt"
	"os"
	"strings"
)

// ReadPasswordFile reads a pool password from a file (never from argv):
// its first line, without the line ending. An empty password is refused.
func ReadPasswordFile(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("a XenServer pool needs --xen-password-file (a file holding the password)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the XenServer password: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("the XenServer password file %s is empty", path)
	}
	return pw, nil
}
