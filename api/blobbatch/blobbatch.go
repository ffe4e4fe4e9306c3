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
	"errors"
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
// here; the store does that as it writes them.
func Decode(r io.Reader, maxItems int, maxBlob int64) ([]Item, error) {
	var magic [len(Magic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != Magic {
		return nil, fmt.Errorf("batch: not a blob batch (magic): %w", raisfs.ErrInvalidArgument)
	}
	var items []Item
	var hdr [headerSize]byte
	for {
		_, err := io.ReadFull(r, hdr[:])
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return nil, cut(len(items), err)
		}
		if len(items) == maxItems {
			return nil, fmt.Errorf("batch: more than %d items: %w", maxItems, raisfs.ErrTooLarge)
		}
		var it Item
		copy(it.Hash[:], hdr[:32])
		size := binary.LittleEndian.Uint64(hdr[32:40])
		if size > uint64(maxBlob) {
			return nil, fmt.Errorf("batch: item %d: body of %d bytes exceeds limit %d: %w", len(items), size, maxBlob, raisfs.ErrTooLarge)
		}
		lease := make([]byte, binary.LittleEndian.Uint16(hdr[40:42]))
		if _, err := io.ReadFull(r, lease); err != nil {
			return nil, cut(len(items), err)
		}
		it.Lease = string(lease)
		it.Body = make([]byte, size)
		if _, err := io.ReadFull(r, it.Body); err != nil {
			return nil, cut(len(items), err)
		}
		items = append(items, it)
	}
}

func cut(i int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("batch: item %d cut short: %w", i, raisfs.ErrInvalidArgument)
	}
	return fmt.Errorf("batch: item %d: %w", i, err)
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
