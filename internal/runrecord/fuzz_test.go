package runrecord

import "testing"

func FuzzParse(f *testing.F) {
	good, _ := goodRecord(1).Marshal()
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("a record that parsed does not marshal: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("a record's own bytes do not parse: %v", err)
		}
	})
}
