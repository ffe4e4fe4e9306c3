package chaos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/anishathalye/porcupine"
	"github.com/zeebo/blake3"

	"github.com/raisfs/raisfs"
)

// Op kinds.
const (
	OpPut    = "put"
	OpGet    = "get"
	OpDelete = "delete"
	OpStat   = "stat"
	// Records (keys "r…"): written by transactions that overwrite, read
	// through the client's record cache (client.Config.RecordCache), whose
	// reads must stay linearizable through every fault.
	OpRecordPut    = "record_put"
	OpRecordDelete = "record_delete"
	OpRecordGet    = "record_get"
)

// Outcomes.
const (
	OutOK       = "ok"
	OutNotFound = "not_found"
	OutConflict = "conflict"
	// OutUnknown: the call failed in a way that leaves its effect unknown
	// (a timeout, no leader): it may have taken effect, at any time after
	// it was called.
	OutUnknown = "unknown"
)

// Op is one recorded operation.
type Op struct {
	Client int    `json:"client"`
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	// Value is the value id a put wrote, or a get or stat saw (0: none).
	Value  uint64 `json:"value,omitempty"`
	Out    string `json:"out"`
	Err    string `json:"err,omitempty"`
	Call   int64  `json:"call"`   // nanoseconds since the run started
	Return int64  `json:"return"` // math.MaxInt64 for unknown outcomes
	// Corrupt is set when a get returned bytes that are not a value ever
	// written to this key.
	Corrupt string `json:"corrupt,omitempty"`
}

// History records operations from many goroutines.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Add records op.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the operations.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Payloads are self-describing: a header names the key and the value id,
// the filler is derived from both, and a trailing hash covers it all, so a
// read that returns any wrong byte is caught and attributed.

const payloadMagic = 0x52414953 // "RAIS"

// Payload builds the body of value id for key, size bytes or a little more.
func Payload(key string, value uint64, size int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(payloadMagic))
	binary.Write(&b, binary.LittleEndian, value)
	binary.Write(&b, binary.LittleEndian, uint16(len(key)))
	b.WriteString(key)
	seed := blake3.Sum256(b.Bytes())
	x := binary.LittleEndian.Uint64(seed[:])
	for b.Len() < size-32 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.Write(&b, binary.LittleEndian, x)
	}
	sum := blake3.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// ParsePayload checks a body read for key and returns its value id, or an
// error that says what is wrong with it.
func ParsePayload(key string, body []byte) (uint64, error) {
	if len(body) < 14+32 {
		return 0, fmt.Errorf("%d bytes: too short for a payload", len(body))
	}
	if binary.LittleEndian.Uint32(body) != payloadMagic {
		return 0, errors.New("no payload header")
	}
	value := binary.LittleEndian.Uint64(body[4:])
	n := int(binary.LittleEndian.Uint16(body[12:]))
	if 14+n > len(body) || string(body[14:14+n]) != key {
		return value, fmt.Errorf("payload of another key (value %d)", value)
	}
	want := Payload(key, value, len(body))
	if !bytes.Equal(want, body) {
		return value, fmt.Errorf("value %d: bytes differ from what was written", value)
	}
	return value, nil
}

// classify maps an SDK error to an outcome.
func classify(err error) string {
	switch {
	case err == nil:
		return OutOK
	case errors.Is(err, raisfs.ErrNotFound):
		return OutNotFound
	case errors.Is(err, raisfs.ErrConflict):
		return OutConflict
	}
	return OutUnknown
}

// The model: each key holds at most one value (objects are immutable: a
// put of another value to a present key is a conflict), deletes remove it.
// Keys are independent, so the history is checked per key. The state of a
// key is its value id, 0 when absent.

type modelIn struct {
	kind  string
	value uint64
}

type modelOut struct {
	out   string
	value uint64
}

func step(state uint64, in modelIn, out modelOut) []uint64 {
	switch in.kind {
	case OpRecordPut: // a register: a put overwrites
		switch out.out {
		case OutOK:
			return []uint64{in.value}
		case OutUnknown:
			return []uint64{state, in.value}
		}
	case OpRecordDelete:
		switch out.out {
		case OutOK:
			return []uint64{0}
		case OutUnknown:
			return []uint64{state, 0}
		}
	case OpPut:
		switch out.out {
		case OutOK:
			if state == 0 || state == in.value {
				return []uint64{in.value}
			}
		case OutConflict:
			if state != 0 && state != in.value {
				return []uint64{state}
			}
		case OutUnknown:
			if state == 0 {
				return []uint64{state, in.value} // it may or may not have happened
			}
			return []uint64{state}
		}
	case OpDelete:
		switch out.out {
		case OutOK:
			if state != 0 {
				return []uint64{0}
			}
		case OutNotFound:
			if state == 0 {
				return []uint64{0}
			}
		case OutUnknown:
			return []uint64{state, 0}
		}
	case OpGet, OpStat, OpRecordGet: // reads are alike for objects and records
		switch out.out {
		case OutOK:
			if state == out.value && state != 0 {
				return []uint64{state}
			}
		case OutNotFound:
			if state == 0 {
				return []uint64{0}
			}
		}
	}
	return nil
}

var model = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Metadata.(string)
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{uint64(0)} },
	Step: func(state, input, output interface{}) []interface{} {
		next := step(state.(uint64), input.(modelIn), output.(modelOut))
		out := make([]interface{}, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	Equal: func(a, b interface{}) bool { return a.(uint64) == b.(uint64) },
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(modelIn), output.(modelOut)
		return fmt.Sprintf("%s(%d) -> %s %d", in.kind, in.value, out.out, out.value)
	},
	DescribeState: func(state interface{}) string { return fmt.Sprint(state) },
}

// operations converts a history for porcupine. Failed reads had no effect
// and are left out; operations with unknown outcomes may have happened at
// any time after their call.
func operations(ops []Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		if (op.Kind == OpGet || op.Kind == OpStat || op.Kind == OpRecordGet) && op.Out == OutUnknown {
			continue
		}
		if op.Corrupt != "" {
			continue // reported by the corruption checker
		}
		ret := op.Return
		if op.Out == OutUnknown {
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Client, Input: modelIn{op.Kind, op.Value}, Call: op.Call,
			Output: modelOut{op.Out, outValue(op)}, Return: ret, Metadata: op.Key,
		})
	}
	return out
}

func outValue(op Op) uint64 {
	if op.Kind == OpGet || op.Kind == OpStat || op.Kind == OpRecordGet {
		return op.Value
	}
	return 0
}
