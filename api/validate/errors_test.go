package validate

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestErrorsZeroValue(t *testing.T) {
	var e Errors
	if err := e.Err(); err != nil {
		t.Fatalf("Err() on empty collector = %v, want nil", err)
	}
	if l := e.List(); l != nil {
		t.Fatalf("List() on empty collector = %v, want nil", l)
	}
	if e.Len() != 0 {
		t.Fatalf("Len() = %d, want 0", e.Len())
	}
}

func TestErrorsCollect(t *testing.T) {
	var e Errors
	e.Add("name", "must be at most %d characters", 255)
	e.Add("port", "must be between %d and %d", 1, 65535)
	e.Add("", "request body is empty")

	want := []FieldError{
		{Field: "name", Message: "must be at most 255 characters"},
		{Field: "port", Message: "must be between 1 and 65535"},
		{Field: "", Message: "request body is empty"},
	}
	got := e.List()
	if len(got) != len(want) {
		t.Fatalf("List() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("List()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if e.Len() != 3 {
		t.Errorf("Len() = %d, want 3", e.Len())
	}

	// List returns a copy.
	got[0].Field = "changed"
	if e.List()[0].Field != "name" {
		t.Error("modifying the result of List changed the collector")
	}

	err := e.Err()
	var ve *Error
	if !errors.As(err, &ve) {
		t.Fatalf("Err() = %T, want *Error", err)
	}
	const wantMsg = "name: must be at most 255 characters; port: must be between 1 and 65535; request body is empty"
	if err.Error() != wantMsg {
		t.Errorf("Error() = %q, want %q", err.Error(), wantMsg)
	}

	// The *Error is not affected by later additions.
	e.Add("later", "x")
	if len(ve.Fields) != 3 {
		t.Errorf("Err() result changed after Add: %d fields", len(ve.Fields))
	}
}

func TestFieldErrorJSON(t *testing.T) {
	b, err := json.Marshal(FieldError{Field: "a.b", Message: "is required"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"field":"a.b","message":"is required"}`; got != want {
		t.Errorf("json = %s, want %s", got, want)
	}
}

func TestJoinIndex(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Join("timeouts", "client_ms"), "timeouts.client_ms"},
		{Join("", "x"), "x"},
		{Join("x", ""), "x"},
		{Join("", ""), ""},
		{Join(Index("conditions", 2), "value"), "conditions[2].value"},
		{Index("conditions", 2), "conditions[2]"},
		{Index("", 0), "[0]"},
		{Index(Join("a", "b"), 10), "a.b[10]"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
