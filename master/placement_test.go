package master

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/raisfs/raisfs"
)

func TestPlace_SpreadsOverDataCentersThenRacks(t *testing.T) {
	var cands []candidate
	for dc := range 2 {
		for rack := range 2 {
			for n := range 3 {
				cands = append(cands, candidate{id: fmt.Sprintf("d%dr%dn%d", dc, rack, n), dc: fmt.Sprintf("dc%d", dc), rack: fmt.Sprintf("r%d", rack), free: 1 << 40})
			}
		}
	}
	byID := map[string]candidate{}
	for _, c := range cands {
		byID[c.id] = c
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		got, err := place(cands, 4, 2, rng)
		if err != nil {
			t.Fatal(err)
		}
		dcs, racks := map[string]int{}, map[string]bool{}
		for _, id := range got {
			c := byID[id]
			dcs[c.dc]++
			racks[c.dc+c.rack] = true
		}
		if len(got) != 4 || dcs["dc0"] != 2 || dcs["dc1"] != 2 || len(racks) != 4 {
			t.Fatalf("place = %v: want 2 per data center, 4 racks", got)
		}
	}
}

func TestPlace_WeightsByFreeSpace(t *testing.T) {
	cands := []candidate{{id: "big", dc: "a", free: 900}, {id: "small", dc: "a", free: 100}}
	rng := rand.New(rand.NewPCG(3, 4))
	big := 0
	for range 1000 {
		got, _ := place(cands, 1, 0, rng)
		if got[0] == "big" {
			big++
		}
	}
	if big < 850 || big > 950 {
		t.Fatalf("big chosen %d/1000 times, want about 900", big)
	}
}

func TestPlace_RefusesWhatItCannotSatisfy(t *testing.T) {
	cands := []candidate{{id: "a", dc: "x", free: 1}, {id: "b", dc: "x", free: 1}}
	rng := rand.New(rand.NewPCG(5, 6))
	if _, err := place(cands, 3, 0, rng); !errors.Is(err, raisfs.ErrNoPlacement) {
		t.Fatalf("3 copies on 2 servers: %v", err)
	}
	if _, err := place(cands, 2, 2, rng); !errors.Is(err, raisfs.ErrNoPlacement) {
		t.Fatalf("2 data centers from 1: %v", err)
	}
	got, err := place(cands, 2, 0, rng)
	if err != nil || len(got) != 2 || got[0] == got[1] {
		t.Fatalf("place = %v, %v; want two distinct servers", got, err)
	}
}
