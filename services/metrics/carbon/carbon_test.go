package carbon

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
)

func TestParseLine(t *testing.T) {
	const now = 1700000999
	cases := []struct {
		line string
		want Point
		err  bool
	}{
		{"a.b.c 1.5 1700000000\n", Point{"a.b.c", 1.5, 1700000000}, false},
		{"  a.b.c 2 1700000000.9\r\n", Point{"a.b.c", 2, 1700000000}, false},
		{"a 1 1e9", Point{"a", 1, 1000000000}, false},
		{"a 1 -1", Point{"a", 1, now}, false},
		{"disk.used;rack=a1;datacenter=dc1;server=web01 3 1700000000", Point{"disk.used;datacenter=dc1;rack=a1;server=web01", 3, 1700000000}, false},
		{"x;a=1;a=2 1 1700000000", Point{"x;a=2", 1, 1700000000}, false},
		{"a NaN 1700000000", Point{}, true},
		{"a 1 1700000000 extra", Point{}, true},
		{"a 1", Point{}, true},
		{"a", Point{}, true},
		{"a..b 1 1", Point{}, true},
		{"a;=b 1 1", Point{}, true},
		{"a;k=~v 1 1", Point{}, true},
		{"a one 1", Point{}, true},
	}
	for _, c := range cases {
		got, err := ParseLine([]byte(c.line), now)
		if c.err {
			var le *LineError
			if !errors.As(err, &le) {
				t.Errorf("%q: want a LineError, got %v (%+v)", c.line, err, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %+v, %v; want %+v", c.line, got, err, c.want)
		}
	}
	if _, err := ParseLine([]byte("  \r\n"), now); !errors.Is(err, ErrEmpty) {
		t.Errorf("blank line: %v", err)
	}
}

// The payloads were made by Debian's python3 pickle.dumps with protocols 0-5.
func TestDecodePickleFromPython(t *testing.T) {
	b, err := os.ReadFile("testdata/pickles.json")
	if err != nil {
		t.Fatal(err)
	}
	var byProto map[string]string
	if err := json.Unmarshal(b, &byProto); err != nil {
		t.Fatal(err)
	}
	want := []Point{
		{"a.b.c", 1.5, 1700000000},
		{"x.y;a=1;b=2", -3, 1700000010},
		{"uni.code", 1 << 40, 1700000020},
		{"m", 7, 42},
	}
	for proto, h := range byProto {
		data, _ := hex.DecodeString(h)
		got, bad, err := DecodePickle(data, 42)
		if err != nil {
			t.Fatalf("protocol %s: %v", proto, err)
		}
		if bad != 1 || !reflect.DeepEqual(got, want) {
			t.Errorf("protocol %s: got %+v bad=%d; want %+v bad=1", proto, got, bad, want)
		}
	}
}

func TestDecodePickleRefusesObjects(t *testing.T) {
	// cos\nsystem\n(S'echo hi'\ntR. : the classic exploit; GLOBAL is refused.
	_, _, err := DecodePickle([]byte("cos\nsystem\n(S'echo hi'\ntR."), 0)
	if err == nil {
		t.Fatal("GLOBAL opcode accepted")
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"a.b 1 2", "a;x=y 1 -1", "a 1e308 1e12", " ", "a\x00 1 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseLine(b, 1)
		if err == nil && p.Name == "" {
			t.Fatal("empty name accepted")
		}
	})
}

func FuzzDecodePickle(f *testing.F) {
	b, _ := os.ReadFile("testdata/pickles.json")
	var byProto map[string]string
	_ = json.Unmarshal(b, &byProto)
	for _, h := range byProto {
		data, _ := hex.DecodeString(h)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = DecodePickle(data, 1)
	})
}
