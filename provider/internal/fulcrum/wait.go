package fulcrum

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Status is what Wait needs to know about an object.
type Status struct {
	Found              bool
	ProvisioningStatus string
	Message            string
}

// ErrObjectError is returned when the object went to provisioning status error.
var ErrObjectError = errors.New("the object is in error")

// errorGrace is how long WaitActive keeps polling an object that reads
// error before it fails: a node's report refusing an older version of the
// load balancer can mark a just-changed object error until the node applies
// and reports the newer one (a report every few seconds at most).
const errorGrace = 5 * time.Second

// WaitActive polls get until the object is active, fails with the API's
// message when it stays in error (errorGrace), and gives up at ctx's deadline
// (the resource's timeouts block).
func WaitActive(ctx context.Context, get func(context.Context) (Status, error)) (err error) {
	ctx, end := startWait(ctx, "wait active")
	defer func() { end(err) }()
	var errorSince time.Time
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
			if errorSince.IsZero() {
				errorSince = time.Now()
			}
			if time.Since(errorSince) >= errorGrace {
				return false, fmt.Errorf("%w: %s", ErrObjectError, s.Message)
			}
			return false, nil
		}
		errorSince = time.Time{}
		return false, nil
	})
}

// WaitGone polls get until the object is gone (404).
func WaitGone(ctx context.Context, get func(context.Context) (Status, error)) (err error) {
	ctx, end := startWait(ctx, "wait gone")
	defer func() { end(err) }()
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

// Waiter waits on one kind of API object that has a provisioning status (a
// load balancer, listener, pool or member), read through the package's get.
type Waiter[T any] struct {
	// Kind names the object in messages, in lower case: "load balancer".
	Kind string
	// Get reads one object; found is false on 404, other failures go to diags.
	Get func(ctx context.Context, c *Client, id string, diags *diag.Diagnostics) (obj *T, found bool)
	// Status is the object's provisioning status and status message.
	Status func(obj *T) (status openapi.ProvisioningStatus, message *string)
}

// Active waits until every node serves the object's current version (see
// WaitActive) and returns the last object read, nil when none was.
func (w Waiter[T]) Active(ctx context.Context, c *Client, id string) (*T, error) {
	var last *T
	err := WaitActive(ctx, func(ctx context.Context) (Status, error) {
		s, obj, err := w.read(ctx, c, id)
		if obj != nil {
			last = obj
		}
		return s, err
	})
	return last, err
}

// Gone waits until the object reads as 404 (see WaitGone).
func (w Waiter[T]) Gone(ctx context.Context, c *Client, id string) error {
	return WaitGone(ctx, func(ctx context.Context) (Status, error) {
		s, _, err := w.read(ctx, c, id)
		return s, err
	})
}

// AddError reports err from Active (want "active") or Gone (want "gone");
// a nil err adds nothing.
func (w Waiter[T]) AddError(diags *diag.Diagnostics, id, want string, err error) {
	kind := strings.ToUpper(w.Kind[:1]) + w.Kind[1:]
	switch {
	case err == nil:
	case errors.Is(err, ErrObjectError):
		diags.AddError(fmt.Sprintf("The %s went to provisioning status error", w.Kind),
			fmt.Sprintf("%s %s could not be applied by the dataplane: %v", kind, id, err))
	default:
		diags.AddError(fmt.Sprintf("%s did not become %s", kind, want), fmt.Sprintf("%s %s: %v", kind, id, err))
	}
}

// AddReapplyWarning reports that an object in error, sent again with its
// values unchanged (see ReapplyInError), is still in error: a warning, not an
// error. A load balancer, listener or pool is in error when its load
// balancer's configuration is refused, and the object at fault may be a child
// that this apply fixes only after this object's update (children wait for
// their parents): an error would stop that fix. The state keeps the update's
// answer (pending_update, as the object's last version is not served), so
// the next refresh reads where the object ended.
func (w Waiter[T]) AddReapplyWarning(diags *diag.Diagnostics, id string, err error) {
	kind := strings.ToUpper(w.Kind[:1]) + w.Kind[1:]
	diags.AddWarning(fmt.Sprintf("The %s is still in provisioning status error", w.Kind),
		fmt.Sprintf("%s %s was sent again unchanged and the dataplane still refuses its load balancer: %v. "+
			"If another object of the load balancer is at fault, fixing it makes this one active; otherwise the next plan sends it again.", kind, id, err))
}

// read is one poll: the object's status and, when found, the object.
func (w Waiter[T]) read(ctx context.Context, c *Client, id string) (Status, *T, error) {
	var diags diag.Diagnostics
	obj, found := w.Get(ctx, c, id, &diags)
	if diags.HasError() {
		return Status{}, nil, fmt.Errorf("%s: %s", diags[0].Summary(), diags[0].Detail())
	}
	if !found {
		return Status{}, nil, nil
	}
	status, msg := w.Status(obj)
	s := Status{Found: true, ProvisioningStatus: string(status)}
	if msg != nil {
		s.Message = *msg
	}
	return s, obj, nil
}
