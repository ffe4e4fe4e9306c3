package masterpb

// Error reasons carried in a google.rpc.ErrorInfo detail of a failed call
// (domain ErrorDomain), so both ends map errors to the same sentinels
// without matching message text.
const (
	ErrorDomain = "raisfs"

	ReasonNotFound        = "NOT_FOUND"
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	ReasonConflict        = "CONFLICT"
	ReasonNoPlacement     = "NO_PLACEMENT"
	ReasonLeaseExpired    = "LEASE_EXPIRED"
	ReasonNotLeader       = "NOT_LEADER"
	ReasonOutcomeUnknown  = "OUTCOME_UNKNOWN"
	ReasonPermission      = "PERMISSION_DENIED"
	ReasonUnavailable     = "UNAVAILABLE"
	ReasonNoSpace         = "NO_SPACE"
	ReasonCompareFailed   = "COMPARE_FAILED"
)
