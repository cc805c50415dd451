package fulcrum

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Status is what Wait needs to know about an object.
type Status struct {
	Found              bool
	ProvisioningStatus string
	Message            string
}

// ErrObjectError is returned when the object went to provisioning status error.
var ErrObjectError = errors.New("the object is in error")

// WaitActive polls get until the object is active, fails with the API's
// message when it goes to error, and gives up at ctx's deadline (the
// resource's timeouts block).
func WaitActive(ctx context.Context, get func(context.Context) (Status, error)) error {
	return poll(ctx, func() (bool, error) {
		s, err := get(ctx)
		if err != nil {
			return false, err
		}
		switch {
		case !s.Found:
			return false, errors.New("the object disappeared while waiting for it to become active")
		case s.ProvisioningStatus == "active":
			return true, nil
		case s.ProvisioningStatus == "error":
			return false, fmt.Errorf("%w: %s", ErrObjectError, s.Message)
		}
		return false, nil
	})
}

// WaitGone polls get until the object is gone (404).
func WaitGone(ctx context.Context, get func(context.Context) (Status, error)) error {
	return poll(ctx, func() (bool, error) {
		s, err := get(ctx)
		if err != nil {
			return false, err
		}
		return !s.Found, nil
	})
}

func poll(ctx context.Context, done func() (bool, error)) error {
	delay := 50 * time.Millisecond
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}
