package xenapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
)

const testTask = "OpaqueRef:7a5c0000-0000-4000-8000-000000000001"

// taskScript makes f run Async.method as a task whose statuses come from
// statuses in turn (the last repeats), with this result or error_info.
func taskScript(f *fakeXapi, method string, statuses []string, result string, errorInfo []string) {
	f.result("Async."+method, testTask)
	n := 0
	f.handle("task.get_status", func(p []json.RawMessage) (any, []string) {
		if str(p[0]) != testTask {
			return nil, []string{ErrHandleInvalid, "task", str(p[0])}
		}
		st := statuses[min(n, len(statuses)-1)]
		n++
		return st, nil
	})
	f.result("task.get_result", result)
	f.result("task.get_error_info", errorInfo)
	f.result("task.destroy", "")
	f.result("task.cancel", "")
}

func TestAsyncPendingThenSuccess(t *testing.T) {
	f := newFakeXapi(t)
	cfg := f.config()
	clk := cfg.Clock.(*clocktest.Clock)
	start := clk.Now()
	s, err := Login(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	taskScript(f, "VM.snapshot", []string{"pending", "pending", "success"}, "<value>OpaqueRef:5aa0-1</value>", nil)
	res, err := s.Async(context.Background(), "VM.snapshot", "OpaqueRef:vm-1", "nightly")
	if err != nil || res != "OpaqueRef:5aa0-1" {
		t.Fatalf("Async = %q, %v", res, err)
	}
	if n := f.called("task.get_status"); n != 3 {
		t.Errorf("get_status called %d times, want 3", n)
	}
	if f.called("task.destroy") != 1 || f.called("task.cancel") != 0 {
		t.Error("the task was not destroyed, or was cancelled")
	}
	if waited := clk.Now().Sub(start); waited != 150*time.Millisecond { // 50 ms, then 100 ms
		t.Errorf("polling waited %v, want 150ms", waited)
	}
	if p := f.paramsOf("Async.VM.snapshot")[0]; len(p) != 3 || p[1] != "OpaqueRef:vm-1" || p[2] != "nightly" {
		t.Errorf("Async params = %v", p)
	}
}

func TestAsyncBackoffCapped(t *testing.T) {
	f := newFakeXapi(t)
	cfg := f.config()
	clk := cfg.Clock.(*clocktest.Clock)
	start := clk.Now()
	s, _ := Login(context.Background(), cfg)
	statuses := append(make([]string, 0, 9), "pending", "pending", "pending", "pending", "pending", "pending", "pending", "pending", "success")
	taskScript(f, "VDI.list_changed_blocks", statuses, "", nil)
	if _, err := s.Async(context.Background(), "VDI.list_changed_blocks", "OpaqueRef:a", "OpaqueRef:b"); err != nil {
		t.Fatal(err)
	}
	// 50+100+200+400+800+1600 ms, then 2 s twice.
	if waited := clk.Now().Sub(start); waited != 3150*time.Millisecond+4*time.Second {
		t.Errorf("polling waited %v", waited)
	}
}

func TestAsyncFailure(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	taskScript(f, "VDI.data_destroy", []string{"pending", "failure"}, "", []string{ErrVDIInUse, "OpaqueRef:vdi-1", "data_destroy"})
	err := s.DataDestroy(context.Background(), "OpaqueRef:vdi-1")
	var xe *Error
	if !errors.As(err, &xe) || xe.Code != ErrVDIInUse || xe.Method != "VDI.data_destroy" || len(xe.Params) != 2 || xe.Params[1] != "data_destroy" {
		t.Fatalf("err = %#v", err)
	}
	if f.called("task.destroy") != 1 {
		t.Error("the failed task was not destroyed")
	}
	// A failure whose error_info is unusable is still an error.
	taskScript(f, "VDI.data_destroy", []string{"failure"}, "", []string{})
	if err := s.DataDestroy(context.Background(), "OpaqueRef:vdi-1"); err == nil || !strings.Contains(err.Error(), "error_info") {
		t.Fatalf("err = %v", err)
	}
}

func TestAsyncCancelledOnHost(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	taskScript(f, "VDI.destroy", []string{"cancelling", "cancelled"}, "", nil)
	if err := s.DestroyVDI(context.Background(), "OpaqueRef:vdi-1"); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("err = %v", err)
	}
}

func TestAsyncUnknownStatus(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	taskScript(f, "VDI.destroy", []string{"exploded"}, "", nil)
	if err := s.DestroyVDI(context.Background(), "OpaqueRef:vdi-1"); err == nil || !strings.Contains(err.Error(), "unknown status") {
		t.Fatalf("err = %v", err)
	}
}

func TestAsyncContextCancelSendsTaskCancel(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	taskScript(f, "VM.snapshot", []string{"pending"}, "", nil)
	polls := 0
	f.handle("task.get_status", func(p []json.RawMessage) (any, []string) {
		if polls++; polls == 2 {
			cancel()
		}
		return "pending", nil
	})
	_, err := s.Async(ctx, "VM.snapshot", "OpaqueRef:vm-1", "x")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if p := f.paramsOf("task.cancel"); len(p) != 1 || p[0][1] != testTask {
		t.Fatalf("task.cancel calls = %v", p)
	}
	if f.called("task.destroy") != 1 {
		t.Error("the cancelled task was not destroyed")
	}
}

func TestAsyncBadTaskRef(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	f.result("Async.VM.snapshot", 12)
	if _, err := s.Async(context.Background(), "VM.snapshot", "OpaqueRef:vm-1", "x"); err == nil || !strings.Contains(err.Error(), "reference") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseTaskResult(t *testing.T) {
	ok := map[string]string{
		"":                             "",
		"   ":                          "",
		"<value>OpaqueRef:abc</value>": "OpaqueRef:abc",
		"<value><string>OpaqueRef:abc</string></value>": "OpaqueRef:abc",
		"<value><string></string></value>":              "",
		"<value><string/></value>":                      "",
		"<value/>":                                      "",
		" <value>AAEC/w==</value>\n":                    "AAEC/w==",
		"<value>a &amp; b &lt;c&gt; &#65;</value>":      "a & b <c> A",
		"AAEC/w==":      "AAEC/w==",
		"OpaqueRef:abc": "OpaqueRef:abc",
	}
	for in, want := range ok {
		if got, err := ParseTaskResult(in); err != nil || got != want {
			t.Errorf("ParseTaskResult(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"<value>", "<value>a</value><value>b</value>", "<value><int>3</int></value>", "<array/>",
		"<value>x<string>y</string></value>", "<value>&bogus;</value>", "<value><string>a</value>",
	} {
		if got, err := ParseTaskResult(in); err == nil {
			t.Errorf("ParseTaskResult(%q) = %q, want an error", in, got)
		}
	}
}

// FuzzTaskResult: any fragment parses or fails without panic; plain text
// comes back unchanged; a parsed XML value, wrapped again (escaped) in
// <value><string>, parses to itself.
func FuzzTaskResult(f *testing.F) {
	for _, s := range []string{"<value>OpaqueRef:1</value>", "<value><string>x &amp; y</string></value>", "plain",
		"", "<value/>", "<value><int>1</int></value>", "<value>a</value>junk", "<?xml version=\"1.0\"?><value>a</value>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTaskResult(s)
		if err != nil {
			return
		}
		if trimmed := strings.TrimSpace(s); !strings.HasPrefix(trimmed, "<") {
			if trimmed != "" && got != s {
				t.Fatalf("plain text %q came back as %q", s, got)
			}
			return
		}
		var b strings.Builder
		b.WriteString("<value><string>")
		_ = xmlEscape(&b, got)
		b.WriteString("</string></value>")
		again, err := ParseTaskResult(b.String())
		if err == nil && again != got {
			t.Fatalf("ParseTaskResult(%q) = %q, but re-wrapped it gives %q", s, got, again)
		}
	})
}

func TestParseDateTime(t *testing.T) {
	want := time.Date(2022, 1, 1, 12, 30, 45, 0, time.UTC)
	plus3 := want.Add(-3 * time.Hour)
	milli := 123 * time.Millisecond
	cases := map[string]time.Time{
		"20220101T123045": want, "20220101T123045Z": want, "20220101T12:30:45": want, "20220101T12:30:45Z": want,
		"2022-01-01T12:30:45Z": want, "2022-01-01T12:30:45": want,
		"20220101T123045+03": plus3, "20220101T123045+0300": plus3, "20220101T12:30:45+03:00": plus3,
		"2022-01-01T12:30:45.123+03": plus3.Add(milli), "20220101T12:30:45.123Z": want.Add(milli),
		"20220101T12:30:45-01:30": want.Add(90 * time.Minute),
		"19700101T00:00:00Z":      time.Unix(0, 0).UTC(),
	}
	for in, w := range cases {
		got, err := ParseDateTime(in)
		if err != nil || !got.Equal(w) || got.Location() != time.UTC {
			t.Errorf("ParseDateTime(%q) = %v, %v; want %v", in, got, err, w)
		}
	}
	for _, in := range []string{"", "2022", "20220101", "20220101T1230", "20220101T12:30:45+3", "20221301T00:00:00Z",
		"20220101T12:30:45.Z", "1627478400.", "20220101T12:30:45Zjunk", "x0220101T12:30:45Z"} {
		if got, err := ParseDateTime(in); err == nil {
			t.Errorf("ParseDateTime(%q) = %v, want an error", in, got)
		}
	}
}

// FuzzParseDateTime: any string parses or fails without panic; a parsed
// time, written back in xapi's form, parses to the same instant.
func FuzzParseDateTime(f *testing.F) {
	for _, s := range []string{"20240115T10:20:30Z", "20220101T123045+0300", "2022-01-01T12:30:45.123-01:30", "19700101T00:00:00Z", "T", "20220101T12:30:45+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDateTime(s)
		if err != nil {
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseDateTime(%q) is not in UTC", s)
		}
		again, err := ParseDateTime(got.Format("20060102T15:04:05.999999999Z"))
		if err != nil || !again.Equal(got) {
			t.Fatalf("ParseDateTime(%q) = %v, which does not round-trip (%v, %v)", s, got, again, err)
		}
	})
}
