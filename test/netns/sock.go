package netns

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Listen returns a listener created inside the namespace; it may be used from any goroutine.
// Close closes it if the caller has not.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, addr, n.Short, err)
	}
	n.env.Defer(func() error { l.Close(); return nil })
	return l, nil
}

// DialContext connects from inside the namespace; its signature fits http.Transport.DialContext.
// addr must be an IP literal and port: a name would be resolved off the namespace's thread.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		// The socket is created on this goroutine, hence in the namespace; it keeps it
		// even when the dial blocks and the goroutine moves.
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Dial connects from inside the namespace, giving up after timeout.
func (n *NS) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.DialContext(ctx, network, addr)
}

// HTTPClient returns a client whose every request opens a new connection from inside the
// namespace and gives up after timeout.
func (n *NS) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       n.DialContext,
			DisableKeepAlives: true,
			Proxy:             nil, // never an HTTP(S)_PROXY from the environment
		},
	}
}
