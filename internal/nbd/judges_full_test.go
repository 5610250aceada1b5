package nbd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/testutil/judge"
)

// The full mode held against libnbd's nbdinfo and nbdcopy and qemu's
// qemu-img, plain and over TLS with a self-signed certificate.

// wantMap is what `nbdinfo --map` prints for layout: one line per extent,
// offset, length, state and its description.
func wantMap(layout []Extent) []string {
	var lines []string
	var off int64
	for _, e := range layout {
		state, desc := 0, "data"
		if e.Hole {
			state, desc = 3, "hole,zero"
		}
		lines = append(lines, fmt.Sprintf("%d %d %d %s", off, e.Len, state, desc))
		off += e.Len
	}
	return lines
}

// judgeCase is one way the judges reach a full-mode server.
type judgeCase struct {
	name, scheme, query string
	tls                 bool
}

var fullJudgeCases = []judgeCase{
	{"plain", "nbd", "", false},
	{"tls", "nbds", "tls-certificates=DIR", true},
}

// startJudgeServer serves disk0 (testLayout) and a small disk1 in full
// mode; it returns disk0's URI, its bytes in a file, and the directory
// holding the CA certificate.
func startJudgeServer(t *testing.T, tc judgeCase) (uri, file, certDir string, port int) {
	cert := newTestCert(t, "judge.example")
	exp := newHoleExport(testLayout, 41)
	conf := cert.conf
	if !tc.tls {
		conf = nil
	}
	_, e := fullServer(t, map[string]ServerExport{"disk0": exp, "disk1": &memExport{data: randomBytes(4096, 42)}}, conf)
	certDir = t.TempDir()
	file = filepath.Join(t.TempDir(), "disk0.raw")
	for name, b := range map[string][]byte{filepath.Join(certDir, "ca-cert.pem"): []byte(cert.pem), file: exp.data} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.Name = "disk0"
	return judgeURI(tc.scheme, e, strings.ReplaceAll(tc.query, "DIR", certDir)), file, certDir, e.Port
}

func TestJudgeFullModeNbdinfo(t *testing.T) {
	nbdinfo := judge.Need(t, "nbdinfo")
	for _, tc := range fullJudgeCases {
		t.Run(tc.name, func(t *testing.T) {
			uri, _, _, _ := startJudgeServer(t, tc)
			var got []string
			for _, line := range strings.Split(judge.Run(t, nbdinfo, "--map", uri), "\n") {
				if f := strings.Fields(line); len(f) > 0 {
					got = append(got, strings.Join(f, " "))
				}
			}
			if want := wantMap(testLayout); !equalLines(got, want) {
				t.Errorf("nbdinfo --map:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			list := judge.Run(t, nbdinfo, "--list", uri)
			for _, want := range []string{`export="disk0"`, `export="disk1"`, "export-size: " + strconv.Itoa(int(sumLen(testLayout))),
				"base:allocation", "is_read_only: true", "can_multi_conn: true", "block_size_maximum: 33554432"} {
				if !strings.Contains(list, want) {
					t.Errorf("nbdinfo --list does not show %q:\n%s", want, list)
				}
			}
		})
	}
}

func TestJudgeFullModeQemuCompare(t *testing.T) {
	qemuImg := judge.Need(t, "qemu-img")
	for _, tc := range fullJudgeCases {
		t.Run(tc.name, func(t *testing.T) {
			uri, file, certDir, port := startJudgeServer(t, tc)
			var out string
			if !tc.tls {
				out = judge.Run(t, qemuImg, "compare", "-f", "raw", "-F", "raw", file, uri)
			} else {
				out = judge.Run(t, qemuImg, "compare", "--object", "tls-creds-x509,id=tls0,endpoint=client,dir="+certDir,
					"--image-opts", "driver=raw,file.driver=file,file.filename="+file,
					"driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,file.server.port="+
						strconv.Itoa(port)+",file.export=disk0,file.tls-creds=tls0")
			}
			if !strings.Contains(out, "Images are identical") {
				t.Errorf("qemu-img compare: %s", out)
			}
		})
	}
}

func TestJudgeFullModeNbdcopy(t *testing.T) {
	nbdcopy := judge.Need(t, "nbdcopy")
	for _, tc := range fullJudgeCases {
		t.Run(tc.name, func(t *testing.T) {
			uri, file, _, _ := startJudgeServer(t, tc)
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, extra := range [][]string{nil, {"--request-size=33554432"}, {"--connections=1", "--requests=32", "--request-size=65536"}} {
				dst := filepath.Join(t.TempDir(), "copy.raw")
				judge.Run(t, nbdcopy, append(extra, uri, dst)...)
				got, err := os.ReadFile(dst)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("nbdcopy %v: the copy (%d bytes) differs from the source (%d bytes)", extra, len(got), len(want))
				}
			}
		})
	}
}

func equalLines(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

func sumLen(layout []Extent) int64 {
	var n int64
	for _, e := range layout {
		n += e.Len
	}
	return n
}
