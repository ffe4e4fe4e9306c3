package chunkserver

import (
	"math/bits"
	"sync"
)

// Buffers for request bodies and needles on the put path, reused instead of
// allocated per put. A chunk server under a stream of 64 KiB puts otherwise
// allocates three body-sized buffers per blob (the batch, the needle, the
// volume write) and spends a fifth of its CPU in allocation and garbage
// collection (perf, ARCHITECTURE.md "Put buffers").
//
// Sizes are rounded up to a power of two from 4 KiB to 32 MiB (the largest
// batch); anything larger is allocated and left to the collector.
const (
	minBufShift = 12
	maxBufShift = 25
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer of length n with unspecified contents. Give it
// back with putBuf once nothing refers to it.
func getBuf(n int) []byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		return make([]byte, n)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minBufShift))
}

// putBuf gives back a buffer from getBuf. Buffers of other capacities are
// ignored.
func putBuf(b []byte) {
	c := bufClass(cap(b))
	if c >= len(bufPools) || cap(b) != 1<<(c+minBufShift) {
		return
	}
	b = b[:0]
	bufPools[c].Put(&b)
}
