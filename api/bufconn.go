package api

import (
	"bufio"
	"io"
	"net"
)

// Buffered reads of cleartext connections (issue 10). Go's HTTP/2 server
// reads each frame from its connection in two reads, the 9-byte header and
// then the payload: over cleartext (the agents' streams, h2c) each is a
// system call, and an agent's acknowledgement is one small DATA frame per
// write. Reading through a buffer takes both with one call. TLS connections
// read whole records already and are left as they are.

// connReadBuffer is the read buffer of each cleartext connection.
const connReadBuffer = 4096

// bufferedListener accepts connections whose reads are buffered.
type bufferedListener struct{ net.Listener }

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	return &bufferedConn{TCPConn: tc, r: bufio.NewReaderSize(tc, connReadBuffer)}, nil
}

// bufferedConn is a TCP connection read through a buffer; everything else
// (deadlines, half-close, sendfile) is the connection's.
type bufferedConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ReadFrom writes to the connection (sendfile where it can).
func (c *bufferedConn) ReadFrom(r io.Reader) (int64, error) { return c.TCPConn.ReadFrom(r) }

// WriteTo reads what is buffered first (TCPConn's would skip it).
func (c *bufferedConn) WriteTo(w io.Writer) (int64, error) { return c.r.WriteTo(w) }
