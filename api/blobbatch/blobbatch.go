// Package blobbatch is the body of a chunk server's batch upload, POST
// /v1/volumes/{vid}/blobs: several blobs of one volume, each with its own
// write lease, in one request, so that they share one round trip and one
// fsync. The SDK groups concurrent small puts into such batches; a 4 KiB
// put alone costs more in requests and wake-ups than in bytes.
//
// Layout (integers little-endian):
//
//	batch := "RAISBAT1" item*
//	item  := hash (32 bytes, BLAKE3-256) | size (8) | lease length (2) | lease | body (size bytes)
//
// The answer is JSON (Response): one result per item, in order.
package blobbatch

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/raisfs/raisfs"
)

// Magic starts every batch.
const Magic = "RAISBAT1"

// ContentType is the Content-Type of a batch.
const ContentType = "application/x-rais-blob-batch"

// Item is one blob of a batch.
type Item struct {
	Hash  raisfs.Hash
	Lease string
	Body  []byte
}

const headerSize = 32 + 8 + 2

// Size is the encoded size of a batch of items.
func Size(items []Item) int {
	n := len(Magic)
	for _, it := range items {
		n += headerSize + len(it.Lease) + len(it.Body)
	}
	return n
}

// Encode returns the batch of items.
func Encode(items []Item) ([]byte, error) {
	b := make([]byte, 0, Size(items))
	b = append(b, Magic...)
	for _, it := range items {
		if len(it.Lease) > 0xffff {
			return nil, fmt.Errorf("lease of %d bytes: %w", len(it.Lease), raisfs.ErrInvalidArgument)
		}
		b = append(b, it.Hash[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(len(it.Body)))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(it.Lease)))
		b = append(b, it.Lease...)
		b = append(b, it.Body...)
	}
	return b, nil
}

// Decode reads a whole batch from r: at most maxItems items, each body at
// most maxBlob bytes. Any malformation (bad magic, an item cut short, a
// size over the limit) fails the whole batch with an error wrapping
// raisfs.ErrInvalidArgument or raisfs.ErrTooLarge: nothing of a malformed
// batch should be stored. Bodies are not checked against their hashes
// here; the store does that as it writes them. The caller bounds r.
func Decode(r io.Reader, maxItems int, maxBlob int64) ([]Item, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("batch: read: %w", err)
	}
	return Parse(b, maxItems, maxBlob)
}

// Parse is Decode of a batch already in memory. Items' bodies are slices
// of b, not copies: b must outlive them.
func Parse(b []byte, maxItems int, maxBlob int64) ([]Item, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("batch: not a blob batch (magic): %w", raisfs.ErrInvalidArgument)
	}
	b = b[len(Magic):]
	var items []Item
	for len(b) > 0 {
		if len(items) == maxItems {
			return nil, fmt.Errorf("batch: more than %d items: %w", maxItems, raisfs.ErrTooLarge)
		}
		if len(b) < headerSize {
			return nil, cut(len(items))
		}
		var it Item
		copy(it.Hash[:], b[:32])
		size := binary.LittleEndian.Uint64(b[32:40])
		if size > uint64(maxBlob) {
			return nil, fmt.Errorf("batch: item %d: body of %d bytes exceeds limit %d: %w", len(items), size, maxBlob, raisfs.ErrTooLarge)
		}
		lease := int(binary.LittleEndian.Uint16(b[40:42]))
		b = b[headerSize:]
		if uint64(len(b)) < uint64(lease)+size {
			return nil, cut(len(items))
		}
		it.Lease = string(b[:lease])
		it.Body = b[lease : lease+int(size) : lease+int(size)]
		b = b[lease+int(size):]
		items = append(items, it)
	}
	return items, nil
}

func cut(i int) error {
	return fmt.Errorf("batch: item %d cut short: %w", i, raisfs.ErrInvalidArgument)
}

// Result is one item's outcome: Status 201 (stored), 200 (held already)
// or an error status with the chunk server's stable error code.
type Result struct {
	Status  int    `json:"status"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Response is the JSON answer to a batch.
type Response struct {
	Results []Result `json:"results"`
}
