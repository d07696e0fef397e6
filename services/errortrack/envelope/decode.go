package envelope

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Decode reads a request body, undoing Content-Encoding (gzip, x-gzip,
// deflate, br, zstd; anything else is taken as identity, as Relay does),
// and fails with a size-limit Error once the decoded bytes pass max. That
// cap is what defuses decompression bombs: nothing past it is inflated.
func Decode(body io.Reader, encoding string, max int64) ([]byte, error) {
	var r io.Reader = body
	var closer io.Closer
	enc := strings.ToLower(strings.TrimSpace(encoding))
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, bad("gzip body: %v", err)
		}
		r, closer = zr, zr
	case "deflate":
		// RFC 9110 deflate is zlib-wrapped; some clients send raw deflate.
		buf := make([]byte, 2)
		n, _ := io.ReadFull(body, buf)
		head := io.MultiReader(bytes.NewReader(buf[:n]), body)
		if n == 2 && (uint16(buf[0])<<8|uint16(buf[1]))%31 == 0 && buf[0]&0x0f == 8 {
			zr, err := zlib.NewReader(head)
			if err != nil {
				return nil, bad("deflate body: %v", err)
			}
			r, closer = zr, zr
		} else {
			fr := flate.NewReader(head)
			r, closer = fr, fr
		}
	case "br":
		r = brotli.NewReader(body)
	case "zstd":
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max)+1<<20))
		if err != nil {
			return nil, bad("zstd body: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		// Relay treats unknown encodings as identity.
	}
	if closer != nil {
		defer closer.Close()
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		var wire *http.MaxBytesError
		if errors.As(err, &wire) {
			return nil, tooBig("body is over the %d byte limit on the wire", wire.Limit)
		}
		if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrFrameSizeExceeded) {
			return nil, tooBig("zstd body: would be over the %d byte limit once decompressed", max)
		}
		if enc != "" && enc != "identity" {
			return nil, bad("%s body: %v", enc, err)
		}
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if int64(len(data)) > max {
		return nil, tooBig("body is over the %d byte limit once decompressed", max)
	}
	return data, nil
}
