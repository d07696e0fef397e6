package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	st  *Storage
	log *slog.Logger
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
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			handle(ctx, c)
		}()
	}
}

// plainConn reads lines; a bad line is counted and logged and the
// connection goes on. Points are stored in batches; Storage.Add blocks under
// overload, which stops this reader and so pushes back on the client.
func (in *ingest) plainConn(ctx context.Context, c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	batch := make([]carbon.Point, 0, 512)
	remote := c.RemoteAddr().String()
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		err := in.st.Add(ctx, batch)
		batch = batch[:0]
		return err == nil
	}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			in.bad(fmt.Errorf("line longer than %d bytes", r.Size()), remote)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
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
			in.st.TryAdd(batch)
		}
	}
}

// pickleConn reads length-prefixed pickle frames. A frame that does not
// decode is counted and skipped; a frame over the size limit ends the
// connection (its length cannot be trusted to find the next frame).
func (in *ingest) pickleConn(ctx context.Context, c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	remote := c.RemoteAddr().String()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n, err := carbon.ReadFrameLen(hdr)
		if err != nil {
			in.bad(err, remote)
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		pts, bad, err := carbon.DecodePickle(buf, time.Now().Unix())
		if err != nil {
			in.bad(err, remote)
			continue
		}
		for i := 0; i < bad; i++ {
			in.bad(errors.New("pickle: a tuple that is not (path, (timestamp, value))"), remote)
		}
		if len(pts) > 0 {
			if err := in.st.Add(ctx, pts); err != nil {
				return
			}
		}
	}
}
