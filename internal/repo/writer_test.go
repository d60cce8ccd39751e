package repo

import "testing"

// A chunk buffer goes back to its free list with what the chunker grew it
// to, up to the list's size; the empty chunk at the end of a stream does
// not shrink it.
func TestBufList(t *testing.T) {
	l := newBufList(2, 1<<10)
	b := l.get()
	if cap(*b) != 1<<10 {
		t.Fatalf("new buffer of %d bytes, want %d", cap(*b), 1<<10)
	}
	l.put(b, nil) // the end of a stream
	if got := l.get(); got != b || cap(*got) != 1<<10 {
		t.Fatalf("after an empty chunk: buffer %p of %d bytes, want %p of %d", got, cap(*got), b, 1<<10)
	}
	small := make([]byte, 0, 512)
	l.put(b, small[:10]) // a chunk cut into a smaller buffer does not replace it
	if got := l.get(); cap(*got) != 1<<10 {
		t.Fatalf("buffer of %d bytes after a smaller chunk, want %d", cap(*got), 1<<10)
	}
	grown := make([]byte, 2<<10)
	l.put(b, grown) // larger than the list keeps
	if got := l.get(); got == b {
		t.Fatal("the list kept a buffer larger than its size")
	}
	for range 3 {
		l.put(l.get(), nil)
	}
	if n := len(l.free); n != 1 {
		t.Fatalf("the list holds %d buffers, want 1", n)
	}
}
