// Package routingrule is the fulcrum_routing_rule resource: a prioritized
// rule of an http or https listener that matches requests (conditions) and
// forwards, redirects, answers directly or denies (action). Rules are
// realized by the dataplane, so every change waits until the rule is active.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package routingrule
