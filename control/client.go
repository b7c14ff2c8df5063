package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// errReloadUnsupported answers a reload to a daemon started without one.
var errReloadUnsupported = errors.New("this daemon cannot reload")

// ErrNotRunning means no daemon listens on the socket.
var ErrNotRunning = errors.New("sluice is not running (no control socket)")

// Call sends one request to the daemon at path and returns its response. A response carrying an
// error is returned as an error.
func Call(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%w: %s", ErrNotRunning, path)
		}
		return Response{}, fmt.Errorf("connect to %s: %w", path, err)
	}
	defer c.Close()
	deadline := time.Now().Add(connDeadline + 5*time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.SetDeadline(deadline)
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("send %s request: %w", req.Command, err)
	}
	line, err := readLine(c, maxResponse)
	if err != nil {
		return Response{}, fmt.Errorf("read %s response: %w", req.Command, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("decode %s response: %w", req.Command, err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
