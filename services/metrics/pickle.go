package metrics

import (
	"encoding/binary"
	"io"
	"math"

	"github.com/shiploop/shiploop/services/metrics/render"
)

// Render's format=pickle, as graphite-web answers it: a pickled list with
// one dict per series (name, start, end, step, values with None for gaps,
// pathExpression, valuesPerPoint, consolidationFunc, xFilesFactor).
// graphite-web pickles with protocol=-1 (protocol 5 on Python 3.8+); this
// writes protocol 2, which every Python 3 and the pickle readers of Graphite
// clients (carbonapi, graphite-web's own remote finder) accept, and which
// needs none of protocol 4/5's framing. Only the types the answer has are
// written: dicts, lists, str, int, float and None.

type pickleWriter struct{ b []byte }

func (p *pickleWriter) str(s string) {
	p.b = append(p.b, 'X') // BINUNICODE
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
}

func (p *pickleWriter) int(v int64) {
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		p.b = append(p.b, 'J') // BININT
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(v)))
		return
	}
	p.b = append(p.b, 0x8a, 8) // LONG1, 8 bytes of two's complement
	p.b = binary.LittleEndian.AppendUint64(p.b, uint64(v))
}

// float writes v, or None for a gap (NaN).
func (p *pickleWriter) float(v float64) {
	if math.IsNaN(v) {
		p.b = append(p.b, 'N')
		return
	}
	p.b = append(p.b, 'G') // BINFLOAT, big-endian
	p.b = binary.BigEndian.AppendUint64(p.b, math.Float64bits(v))
}

// writeRenderPickle writes data as graphite-web's renderViewPickle does:
// the raw values (not consolidated for maxDataPoints) and valuesPerPoint.
func writeRenderPickle(w io.Writer, data []*render.Series) error {
	p := &pickleWriter{b: []byte{0x80, 2}} // PROTO 2
	p.b = append(p.b, ']')                 // EMPTY_LIST
	if len(data) > 0 {
		p.b = append(p.b, '(') // MARK
	}
	for _, s := range data {
		p.b = append(p.b, '}', '(') // EMPTY_DICT, MARK
		p.str("name")
		p.str(s.Name)
		p.str("start")
		p.int(s.Start)
		p.str("end")
		p.int(s.Stop)
		p.str("step")
		p.int(s.Step)
		p.str("values")
		p.b = append(p.b, ']')
		if len(s.Values) > 0 {
			p.b = append(p.b, '(')
			for _, v := range s.Values {
				p.float(v)
			}
			p.b = append(p.b, 'e') // APPENDS
		}
		p.str("pathExpression")
		p.str(s.PathExpression)
		p.str("valuesPerPoint")
		p.int(int64(max(1, s.ValuesPerPoint)))
		p.str("consolidationFunc")
		cf := s.ConsolidationFunc
		if cf == "" {
			cf = "average"
		}
		p.str(cf)
		p.str("xFilesFactor")
		p.float(s.XFilesFactor)
		p.b = append(p.b, 'u') // SETITEMS
	}
	if len(data) > 0 {
		p.b = append(p.b, 'e') // APPENDS
	}
	p.b = append(p.b, '.') // STOP
	_, err := w.Write(p.b)
	return err
}
