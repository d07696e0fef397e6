package report

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input makes a parser panic, and every finding has a level.
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(lintDir, "*", "*"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil && len(data) < 64<<10 {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"Issues":[{"FromLinter":"x","Pos":{"Filename":"a"}}]}`))
	f.Add([]byte("<checkstyle><error line='x'/></checkstyle>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range Formats {
			fs, err := Parse(format, "f", data)
			if err != nil {
				continue
			}
			for _, x := range fs {
				if x.Level != LevelError && x.Level != LevelWarning && x.Level != LevelNote {
					t.Fatalf("%s: level %q", format, x.Level)
				}
			}
		}
	})
}
