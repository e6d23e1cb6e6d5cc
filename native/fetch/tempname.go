package main

import (
	"fmt"
	"math/rand/v2"
)

// tempFormat: a file is written under ".<name>.part-<8 hex>" next to its final name, then renamed
// ($defs/tempName; the worker removes those a killed run leaves, by the same rule).
const tempFormat = ".%s.part-%08x"

// tempName: a fresh temporary name for the final name `name`.
func tempName(name string) string {
	return fmt.Sprintf(tempFormat, name, rand.Uint32())
}
