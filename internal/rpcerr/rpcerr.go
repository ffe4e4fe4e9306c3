// Package rpcerr is the one translation table between RAIS-FS's sentinel
// errors and gRPC statuses, shared by the masters (which encode) and the
// client SDK (which decodes), so both ends agree without matching text.
package rpcerr

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
)

var table = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{raisfs.ErrNotFound, codes.NotFound, masterpb.ReasonNotFound},
	{raisfs.ErrInvalidArgument, codes.InvalidArgument, masterpb.ReasonInvalidArgument},
	{raisfs.ErrConflict, codes.AlreadyExists, masterpb.ReasonConflict},
	{raisfs.ErrCompareFailed, codes.FailedPrecondition, masterpb.ReasonCompareFailed},
	{raisfs.ErrNoPlacement, codes.ResourceExhausted, masterpb.ReasonNoPlacement},
	{raisfs.ErrNoSpace, codes.ResourceExhausted, masterpb.ReasonNoSpace},
	{raisfs.ErrLeaseExpired, codes.FailedPrecondition, masterpb.ReasonLeaseExpired},
	{raisfs.ErrPermissionDenied, codes.PermissionDenied, masterpb.ReasonPermission},
	{raisfs.ErrNotLeader, codes.Unavailable, masterpb.ReasonNotLeader},
	{raisfs.ErrOutcomeUnknown, codes.Unknown, masterpb.ReasonOutcomeUnknown},
	{raisfs.ErrUnavailable, codes.Unavailable, masterpb.ReasonUnavailable},
}

// ToStatus converts an error for the wire. Context errors become their
// own codes; an error that already carries a status (a forwarded call's)
// passes through unchanged; anything unknown is Internal.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			st := status.New(e.code, err.Error())
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: e.reason, Domain: masterpb.ErrorDomain}); derr == nil {
				st = d
			}
			return st.Err()
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// FromStatus maps a gRPC error back to its sentinel: the result wraps the
// sentinel (errors.Is works) and still carries the status. Errors without
// a RAIS-FS reason come back unchanged.
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == masterpb.ErrorDomain {
			for _, e := range table {
				if e.reason == info.Reason {
					return &Error{msg: st.Message(), sentinel: e.err, status: st}
				}
			}
		}
	}
	return err
}

// Error is a decoded wire error.
type Error struct {
	msg      string
	sentinel error
	status   *status.Status
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.sentinel }

// GRPCStatus returns the original status, so the error can be forwarded.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// ToItem converts one item's error in a batch call for the wire; nil for
// nil. Errors without a sentinel travel with an empty reason.
func ToItem(err error) *masterpb.ItemError {
	if err == nil {
		return nil
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return &masterpb.ItemError{Reason: e.reason, Message: err.Error()}
		}
	}
	return &masterpb.ItemError{Message: err.Error()}
}

// FromItem maps an item's error back to an error that wraps its sentinel
// (none for an unknown reason); nil for nil.
func FromItem(ie *masterpb.ItemError) error {
	if ie == nil {
		return nil
	}
	for _, e := range table {
		if e.reason == ie.Reason && ie.Reason != "" {
			return &Error{msg: ie.Message, sentinel: e.err, status: status.New(e.code, ie.Message)}
		}
	}
	return errors.New(ie.Message)
}
