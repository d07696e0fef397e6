package dashboards

import "testing"

func TestANSIHTML(t *testing.T) {
	for _, c := range []struct{ name, in, q, want string }{
		{"plain", "hello world", "", "hello world"},
		{"escapes html", `<script>alert("x")</script> & co`, "", `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co`},
		{"red then reset", "\x1b[31merror\x1b[0m: bad", "", `<span class="ansi-fg-red">error</span>: bad`},
		{"bold green", "\x1b[1;32mok\x1b[m done", "", `<span class="ansi-bold ansi-fg-green">ok</span> done`},
		{"attributes accumulate", "\x1b[1m\x1b[4mA\x1b[22mB", "", `<span class="ansi-bold ansi-underline">A</span><span class="ansi-underline">B</span>`},
		{"bright and background", "\x1b[93;41mW", "", `<span class="ansi-fg-bright-yellow ansi-bg-red">W</span>`},
		{"default colour", "\x1b[34mx\x1b[39my", "", `<span class="ansi-fg-blue">x</span>y`},
		{"256 colours", "\x1b[38;5;9ma\x1b[38;5;67mb", "", `<span class="ansi-fg-bright-red">a</span><span style="color:#5f87af">b</span>`},
		{"truecolour background", "\x1b[48;2;255;0;16mz", "", `<span style="background-color:#ff0010">z</span>`},
		{"bad truecolour", "\x1b[38;2;999;0;0mz", "", `z`},
		{"other CSI dropped", "\x1b[2K\x1b[1Gprogress", "", "progress"},
		{"OSC hyperlink dropped", "\x1b]8;;https://x\x07link\x1b]8;;\x07", "", "link"},
		{"carriage return keeps last redraw", "\x1b[32m10%\r50%\r100%", "", `<span class="ansi-fg-green">100%</span>`},
		{"control characters dropped", "a\x00b\x07c\td", "", "abc\td"},
		{"truncated escape", "x\x1b[3", "", "x"},
		{"escaped attribute injection", "\x1b[31m\"><img src=x>", "", `<span class="ansi-fg-red">&#34;&gt;&lt;img src=x&gt;</span>`},
		{"mark", "Error: FAILED and failed", "fail", `Error: <mark>FAIL</mark>ED and <mark>fail</mark>ed`},
		{"mark escapes", "<fail>", "fail", `&lt;<mark>fail</mark>&gt;`},
		{"mark inside span", "\x1b[31mtest failed\x1b[0m", "failed", `<span class="ansi-fg-red">test <mark>failed</mark></span>`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := string(ansiHTML(c.in, c.q)); got != c.want {
				t.Errorf("ansiHTML(%q, %q)\n got %s\nwant %s", c.in, c.q, got, c.want)
			}
		})
	}
}

func TestANSIStrip(t *testing.T) {
	if got := ansiStrip("\x1b[1;31mFAIL\x1b[0m pkg/x \x1b[2m(0.1s)\x1b[0m"); got != "FAIL pkg/x (0.1s)" {
		t.Errorf("ansiStrip: %q", got)
	}
}

func FuzzANSIHTML(f *testing.F) {
	f.Add("\x1b[31mred\x1b[0m <b>", "b")
	f.Fuzz(func(t *testing.T, line, q string) {
		out := string(ansiHTML(line, q))
		for _, bad := range []string{"<script", "<img", "\x1b"} {
			if contains(out, bad) {
				t.Fatalf("ansiHTML(%q) = %q holds %q", line, out, bad)
			}
		}
	})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
