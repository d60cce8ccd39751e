package main

import (
	"math/rand/v2"
	"strconv"
)

// rowText returns n bytes of database-row-like text: numbers, hex ids and a
// few repeated words, so that it compresses about as well as the data set's
// table pages do.
func rowText(rng *rand.Rand, n int) []byte {
	words := [...]string{"active", "pending", "shipped", "returned", "berlin", "lisbon", "oslo", "null"}
	b := make([]byte, 0, n+128)
	for len(b) < n {
		b = strconv.AppendUint(b, rng.Uint64N(1e9), 10)
		b = append(b, '|')
		b = strconv.AppendUint(b, rng.Uint64(), 16)
		b = append(b, '|')
		b = append(b, words[rng.IntN(len(words))]...)
		b = append(b, '|')
		b = append(b, words[rng.IntN(len(words))]...)
		b = append(b, '|')
		b = strconv.AppendInt(b, rng.Int64N(100000)-50000, 10)
		b = append(b, '\n')
	}
	return b[:n]
}
