package fulcrum

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/hashicorp/terraform-plugin-log/tflog"
)

// Retries: how often and how long the client retries a request.
const (
	// DefaultMaxRetries is the provider's max_retries when unset.
	DefaultMaxRetries = 4
	// retryWaitMin and retryWaitMax bound the exponential backoff between
	// attempts when the API gives no Retry-After.
	retryWaitMin = 250 * time.Millisecond
	retryWaitMax = 30 * time.Second
	// attemptTimeout bounds one attempt; the resource's timeouts bound all.
	attemptTimeout = 60 * time.Second
	// maxRetryAfter caps the wait a Retry-After asks for, so that a plan
	// cannot hang for an hour on one answer.
	maxRetryAfter = 60 * time.Second
)

// NewIdempotencyKey is a fresh Idempotency-Key for one create: the API
// answers a retried POST with the same key with the first result, so a create
// whose answer was lost can be retried without creating the object twice.
func NewIdempotencyKey() *string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails (Go 1.24+)
	k := "terraform-" + hex.EncodeToString(b)
	return &k
}

// retryingTransport retries requests through go-retryablehttp with at most
// maxRetries retries after the first attempt:
//   - 429 and 503 answers, whatever the request: the API did not act on it;
//     the wait is the answer's Retry-After when it has one;
//   - connection errors and other 5xx answers (but 501) only for idempotent
//     requests: GET, HEAD, PUT, DELETE, and POST with an Idempotency-Key.
//
// A POST without an Idempotency-Key or a PATCH that failed on the way is not
// sent again: the API may have acted on it.
func retryingTransport(next http.RoundTripper, maxRetries int) http.RoundTripper {
	rc := &retryablehttp.Client{
		HTTPClient:     &http.Client{Transport: next, Timeout: attemptTimeout},
		RetryWaitMin:   retryWaitMin,
		RetryWaitMax:   retryWaitMax,
		RetryMax:       maxRetries,
		CheckRetry:     checkRetry,
		Backoff:        backoff,
		ErrorHandler:   retryablehttp.PassthroughErrorHandler,
		RequestLogHook: logRetry,
	}
	return markIdempotent{next: &retryablehttp.RoundTripper{Client: rc}}
}

// idempotentKey marks a request's context with whether it may be sent again
// after a failure on the way (CheckRetry sees the context, not the request).
type idempotentKey struct{}

type markIdempotent struct{ next http.RoundTripper }

func (m markIdempotent) RoundTrip(req *http.Request) (*http.Response, error) {
	return m.next.RoundTrip(req.WithContext(context.WithValue(req.Context(), idempotentKey{}, idempotent(req))))
}

// idempotent reports whether sending req twice has the effect of sending it once.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	case http.MethodPost:
		return req.Header.Get("Idempotency-Key") != ""
	}
	return false
}

func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		return true, nil
	}
	if ok, _ := ctx.Value(idempotentKey{}).(bool); !ok {
		return false, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// backoff waits what the Retry-After of a 429 or 503 asks for (at most
// maxRetryAfter), else exponentially longer from retryWaitMin to retryWaitMax.
func backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	return min(retryablehttp.DefaultBackoff(lo, hi, attempt, resp), maxRetryAfter)
}

func logRetry(_ retryablehttp.Logger, req *http.Request, attempt int) {
	if attempt > 0 {
		tflog.Warn(req.Context(), "retrying a Fulcrum API request", map[string]any{"method": req.Method, "url": req.URL.Redacted(), "attempt": attempt + 1})
	}
}
