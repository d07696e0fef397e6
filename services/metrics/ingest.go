package metrics

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shiploop/shiploop/services/metrics/carbon"
)

// Listeners are the Carbon sockets the service reads.
type Listeners struct {
	TCP    net.Listener   // plaintext
	UDP    net.PacketConn // plaintext
	Pickle net.Listener
}

// ListenCarbon opens plaintext TCP and UDP on addr (the UDP socket uses the
// TCP one's port when addr asks for port 0) and pickle on pickleAddr. An
// empty address turns that protocol off.
func ListenCarbon(addr, pickleAddr string) (*Listeners, error) {
	l := &Listeners{}
	if addr != "" {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("carbon plaintext: listening on %s: %w (choose another with --carbon-listen)", addr, err)
		}
		udp, err := net.ListenPacket("udp", tcp.Addr().String())
		if err != nil {
			tcp.Close()
			return nil, fmt.Errorf("carbon plaintext UDP: listening on %s: %w (choose another with --carbon-listen)", tcp.Addr(), err)
		}
		if uc, ok := udp.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(8 << 20)
		}
		l.TCP, l.UDP = tcp, udp
	}
	if pickleAddr != "" {
		p, err := net.Listen("tcp", pickleAddr)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("carbon pickle: listening on %s: %w (choose another with --pickle-listen)", pickleAddr, err)
		}
		l.Pickle = p
	}
	return l, nil
}

// Close closes every socket.
func (l *Listeners) Close() {
	if l.TCP != nil {
		l.TCP.Close()
	}
	if l.UDP != nil {
		l.UDP.Close()
	}
	if l.Pickle != nil {
		l.Pickle.Close()
	}
}

// ingest reads Carbon traffic into Storage.
type ingest struct {
	st     *Storage
	log    *slog.Logger
	limits CarbonLimits // with defaults applied
	active atomic.Int64 // open TCP connections, plaintext and pickle
	// LinesTooLong, ConnsRefused (over MaxConnections) and IdleClosed
	// (IdleTimeout) are published as shiploop.metrics.ingest.* series.
	LinesTooLong, ConnsRefused, IdleClosed atomic.Int64
	// badLogged limits bad-line logging to a few per second.
	badLogged atomic.Int64
	lastReset atomic.Int64
}

func (in *ingest) bad(err error, remote string) {
	in.st.BadLines.Add(1)
	now := time.Now().Unix()
	if in.lastReset.Swap(now) != now {
		in.badLogged.Store(0)
	}
	if in.badLogged.Add(1) <= 5 {
		in.log.Warn("carbon: bad input skipped", "remote", remote, "err", err)
	}
}

func (in *ingest) serve(ctx context.Context, l *Listeners) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, l.Close)
	defer stop()
	if l.TCP != nil {
		wg.Add(2)
		go func() { defer wg.Done(); in.accept(ctx, l.TCP, in.plainConn) }()
		go func() { defer wg.Done(); in.udp(ctx, l.UDP) }()
	}
	if l.Pickle != nil {
		wg.Add(1)
		go func() { defer wg.Done(); in.accept(ctx, l.Pickle, in.pickleConn) }()
	}
	wg.Wait()
	return nil
}

func (in *ingest) accept(ctx context.Context, lis net.Listener, handle func(context.Context, net.Conn)) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			in.log.Warn("carbon: accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if n, limit := in.active.Add(1), int64(in.limits.MaxConnections); limit > 0 && n > limit {
			in.active.Add(-1)
			in.ConnsRefused.Add(1)
			c.Close()
			continue
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer in.active.Add(-1)
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			handle(ctx, idleConn{Conn: c, timeout: in.limits.IdleTimeout})
		}()
	}
}

// ended counts the connection if the read error that ends it is the idle
// timeout.
func (in *ingest) ended(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		in.IdleClosed.Add(1)
	}
}

// plainConn reads lines; a bad line is counted and logged and the
// connection goes on. A line over MaxLineLength is skipped without being
// buffered, counted, and the connection goes on. Points are stored in
// batches; Storage.AddCarbon blocks under overload, which stops this reader
// and so pushes back on the client.
func (in *ingest) plainConn(ctx context.Context, c net.Conn) {
	maxLine := in.limits.MaxLineLength
	// The buffer holds a whole line of maxLine bytes and its newline, so
	// ErrBufferFull always means a line too long.
	r := bufio.NewReaderSize(c, max(64<<10, maxLine+2))
	batch := make([]carbon.Point, 0, 512)
	remote := c.RemoteAddr().String()
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		err := in.st.AddCarbon(ctx, batch)
		batch = batch[:0]
		return err == nil
	}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || (err == nil && len(line)-1 > maxLine) {
			in.LinesTooLong.Add(1)
			line = nil
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			in.ended(err)
			if len(line) > 0 && err == io.EOF {
				in.bad(fmt.Errorf("unfinished line %q at end of stream", line), remote)
			}
			flush()
			return
		}
		p, perr := carbon.ParseLine(line, time.Now().Unix())
		if perr != nil {
			if !errors.Is(perr, carbon.ErrEmpty) {
				in.bad(perr, remote)
			}
		} else {
			batch = append(batch, p)
		}
		// Store what we have whenever the socket has nothing buffered, so a
		// slow sender's points are visible at once.
		if len(batch) == cap(batch) || (r.Buffered() == 0 && len(batch) > 0) {
			if !flush() {
				return
			}
		}
	}
}

func (in *ingest) udp(ctx context.Context, pc net.PacketConn) {
	buf := make([]byte, 65535)
	var batch []carbon.Point
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		batch = batch[:0]
		data := buf[:n]
		now := time.Now().Unix()
		for len(data) > 0 {
			i := 0
			for i < len(data) && data[i] != '\n' {
				i++
			}
			line := data[:i]
			if i < len(data) {
				i++
			}
			data = data[i:]
			if len(line) > in.limits.MaxLineLength {
				in.LinesTooLong.Add(1)
				continue
			}
			p, err := carbon.ParseLine(line, now)
			if err != nil {
				if !errors.Is(err, carbon.ErrEmpty) {
					in.bad(err, addr.String())
				}
				continue
			}
			batch = append(batch, p)
		}
		if len(batch) > 0 {
			in.st.TryAddCarbon(batch)
		}
	}
}

// pickleConn reads length-prefixed pickle frames. A frame that does not
// decode is counted and skipped; a frame over the size limit ends the
// connection (its length cannot be trusted to find the next frame). A
// frame's buffer grows with the bytes that arrive, not to the length the
// header claims.
func (in *ingest) pickleConn(ctx context.Context, c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	remote := c.RemoteAddr().String()
	var hdr [4]byte
	var frame bytes.Buffer
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			in.ended(err)
			return
		}
		n, err := carbon.ReadFrameLen(hdr)
		if err != nil {
			in.bad(err, remote)
			return
		}
		frame.Reset()
		if frame.Cap() > 1<<20 {
			frame = bytes.Buffer{} // do not keep a large frame's buffer for the next
		}
		if _, err := io.CopyN(&frame, r, int64(n)); err != nil {
			in.ended(err)
			return
		}
		pts, bad, err := carbon.DecodePickle(frame.Bytes(), time.Now().Unix())
		if err != nil {
			in.bad(err, remote)
			continue
		}
		for i := 0; i < bad; i++ {
			in.bad(errors.New("pickle: a tuple that is not (path, (timestamp, value))"), remote)
		}
		if len(pts) > 0 {
			if err := in.st.AddCarbon(ctx, pts); err != nil {
				return
			}
		}
	}
}
