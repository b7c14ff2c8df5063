package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxTrackFile bounds what FILE_CHECK reads of its file: a number and blanks.
const maxTrackFile = 64

// ErrTrackFile is reported for a tracked file whose value fails the check or is not a number.
var ErrTrackFile = errors.New("track file check failed")

// FileCheck is keepalived's FILE_CHECK on a track_file: the file holds an integer. With
// Weight 0, a non-zero value fails the check and zero passes it. Otherwise the check passes
// and reports value*Weight (negated with Reverse) as the target's weight delta; the consumer
// of Events takes a target whose weight falls to 0 or below out of service. A missing or
// unreadable file, or one that does not hold an integer, fails the check.
type FileCheck struct {
	// Path is the track_file's file.
	Path string
	// Weight is FILE_CHECK's weight multiplier (keepalived's default is the track_file's
	// weight, itself 1 by default: the caller resolves it).
	Weight int
	// Reverse is weight's reverse flag.
	Reverse bool
}

var (
	_ TimeoutChecker = FileCheck{}
	_ WeightChecker  = FileCheck{}
)

// Check reads the file once.
func (c FileCheck) Check(ctx context.Context) error {
	_, err := c.CheckWeight(ctx)
	return err
}

// CheckWeight reads the file once and returns its weight delta.
func (c FileCheck) CheckWeight(context.Context) (int, error) {
	f, err := os.Open(c.Path)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrTrackFile, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTrackFile+1))
	if err != nil {
		return 0, fmt.Errorf("%w: read %s: %w", ErrTrackFile, c.Path, err)
	}
	if len(b) > maxTrackFile {
		return 0, fmt.Errorf("%w: %s is longer than %d bytes", ErrTrackFile, c.Path, maxTrackFile)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %s does not hold an integer: %q", ErrTrackFile, c.Path, b)
	}
	if c.Weight == 0 {
		if v != 0 {
			return 0, fmt.Errorf("%w: %s holds %d", ErrTrackFile, c.Path, v)
		}
		return 0, nil
	}
	d := v * int64(c.Weight)
	if c.Reverse {
		d = -d
	}
	if d > math.MaxInt32 || d < math.MinInt32 {
		return 0, fmt.Errorf("%w: %s: %d times weight %d is out of range", ErrTrackFile, c.Path, v, c.Weight)
	}
	return int(d), nil
}

// CheckTimeout is one second: reading a local file is quick.
func (c FileCheck) CheckTimeout() time.Duration { return time.Second }

// String returns e.g. "FILE_CHECK /run/weight".
func (c FileCheck) String() string {
	return fmt.Sprintf("FILE_CHECK %s [%d %v]", c.Path, c.Weight, c.Reverse)
}
