package master

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
)

// errorTable is the one translation table of the gRPC boundary: domain
// error → gRPC code and the reason the client maps back to the sentinel.
var errorTable = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{raisfs.ErrNotFound, codes.NotFound, masterpb.ReasonNotFound},
	{raisfs.ErrInvalidArgument, codes.InvalidArgument, masterpb.ReasonInvalidArgument},
	{raisfs.ErrConflict, codes.AlreadyExists, masterpb.ReasonConflict},
	{raisfs.ErrNoPlacement, codes.ResourceExhausted, masterpb.ReasonNoPlacement},
	{raisfs.ErrNoSpace, codes.ResourceExhausted, masterpb.ReasonNoSpace},
	{raisfs.ErrLeaseExpired, codes.FailedPrecondition, masterpb.ReasonLeaseExpired},
	{raisfs.ErrPermissionDenied, codes.PermissionDenied, masterpb.ReasonPermission},
	{raisfs.ErrNotLeader, codes.Unavailable, masterpb.ReasonNotLeader},
	{raisfs.ErrOutcomeUnknown, codes.Unknown, masterpb.ReasonOutcomeUnknown},
	{raisfs.ErrUnavailable, codes.Unavailable, masterpb.ReasonUnavailable},
}

// toStatus converts an error for the wire. Context errors pass as their
// own codes; errors already carrying a status (from a forwarded call) are
// passed through unchanged.
func toStatus(err error) error {
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
	for _, e := range errorTable {
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

// fromStatus maps a gRPC error back to the domain sentinel (used for
// forwarded calls, whose errors come back as statuses).
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == masterpb.ErrorDomain {
			for _, e := range errorTable {
				if e.reason == info.Reason {
					return &wireError{msg: st.Message(), sentinel: e.err, st: err}
				}
			}
		}
	}
	return err
}

type wireError struct {
	msg      string
	sentinel error
	st       error
}

func (e *wireError) Error() string              { return e.msg }
func (e *wireError) Unwrap() []error            { return []error{e.sentinel} }
func (e *wireError) GRPCStatus() *status.Status { s, _ := status.FromError(e.st); return s }
