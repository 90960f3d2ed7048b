package mask

// automaton is an Aho–Corasick automaton over byte classes (bytes that
// occur in no pattern share class 0). States near the root, where a scan
// of ordinary output spends nearly all its time, have dense rows: one
// table lookup per byte. Deeper states keep only their trie edges (mostly
// one: the rest of a long value) and fall back along failure links, so a
// 4 KiB secret (a private key) costs kilobytes, not a full row per byte.
type automaton struct {
	class  [256]uint16
	nclass int
	// row[s] is the dense row of state s, or -1; delta holds the rows.
	row   []int32
	delta []int32
	// edges[edgeAt[s]:edgeAt[s+1]] are the trie edges of a sparse state.
	edgeAt []int32
	edges  []edge
	fail   []int32
	// out is the pattern a state completes, or -1; dict is the nearest
	// state along the failure links that completes a pattern, or -1, so
	// out then dict, dict... lists every pattern ending here, longest first.
	out   []int32
	dict  []int32
	depth []int32 // length of the prefix a state stands for
	// hit marks states with out or dict set.
	hit []bool
	// fast is delta for the scan loop: an entry is the next state's row
	// offset (row × nclass) when that state is dense and completes no
	// pattern, so ordinary output costs one load per byte; otherwise it is
	// ^state, and the loop takes the slow path for that byte.
	fast     []int32
	rowState []int32 // row → state
}

type edge struct {
	class uint16
	to    int32
}

// denseDepth: states shallower than this get dense rows. At most
// patterns × denseDepth of them, so the rows stay small.
const denseDepth = 4

func newAutomaton(patterns [][]byte) *automaton {
	a := &automaton{}
	for _, p := range patterns {
		for _, c := range p {
			if a.class[c] == 0 {
				a.nclass++
				a.class[c] = uint16(a.nclass)
			}
		}
	}
	a.nclass++
	// The trie.
	children := [][]edge{nil}
	a.out = []int32{-1}
	a.depth = []int32{0}
	child := func(s int32, c uint16) int32 {
		for _, e := range children[s] {
			if e.class == c {
				return e.to
			}
		}
		return -1
	}
	for i, p := range patterns {
		s := int32(0)
		for _, b := range p {
			c := a.class[b]
			t := child(s, c)
			if t < 0 {
				t = int32(len(a.out))
				children = append(children, nil)
				a.out = append(a.out, -1)
				a.depth = append(a.depth, a.depth[s]+1)
				children[s] = append(children[s], edge{c, t})
			}
			s = t
		}
		a.out[s] = int32(i)
	}
	n := len(a.out)
	a.fail = make([]int32, n)
	a.dict = make([]int32, n)
	a.row = make([]int32, n)
	a.edgeAt = make([]int32, n+1)
	for s := range n {
		a.row[s] = -1
		a.edgeAt[s] = int32(len(a.edges))
		a.edges = append(a.edges, children[s]...)
	}
	a.edgeAt[n] = int32(len(a.edges))
	// Breadth first: a state's failure state is shallower, so its links
	// and (if dense) its row are complete when the state is reached.
	a.dict[0] = -1
	queue := []int32{0}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if a.depth[s] < denseDepth {
			r := int32(len(a.delta) / a.nclass)
			a.delta = append(a.delta, make([]int32, a.nclass)...)
			a.row[s] = r
			for c := range a.nclass {
				if t := child(s, uint16(c)); t >= 0 {
					a.delta[int(r)*a.nclass+c] = t
				} else if s != 0 {
					a.delta[int(r)*a.nclass+c] = a.delta[int(a.row[a.fail[s]])*a.nclass+c]
				}
			}
		}
		for _, e := range children[s] {
			t := e.to
			if s != 0 {
				a.fail[t] = a.step(a.fail[s], e.class)
			}
			if f := a.fail[t]; a.out[f] >= 0 {
				a.dict[t] = f
			} else {
				a.dict[t] = a.dict[f]
			}
			queue = append(queue, t)
		}
	}
	a.hit = make([]bool, n)
	for s := range n {
		a.hit[s] = a.out[s] >= 0 || a.dict[s] >= 0
	}
	a.rowState = make([]int32, len(a.delta)/a.nclass)
	for s := range n {
		if a.row[s] >= 0 {
			a.rowState[a.row[s]] = int32(s)
		}
	}
	a.fast = make([]int32, len(a.delta))
	for i, t := range a.delta {
		if a.row[t] >= 0 && !a.hit[t] {
			a.fast[i] = a.row[t] * int32(a.nclass)
		} else {
			a.fast[i] = ^t
		}
	}
	return a
}

// step is the state after reading a byte of class c in state s. The root
// is dense, so the loop ends; each fall back is paid for by a byte that
// went deeper, so a scan stays linear.
func (a *automaton) step(s int32, c uint16) int32 {
	for {
		if r := a.row[s]; r >= 0 {
			return a.delta[int(r)*a.nclass+int(c)]
		}
		for _, e := range a.edges[a.edgeAt[s]:a.edgeAt[s+1]] {
			if e.class == c {
				return e.to
			}
		}
		s = a.fail[s]
	}
}

// offset is s's row offset in fast, or -1 for a state without a dense row
// or one that completes a pattern (the scan must look at it).
func (a *automaton) offset(s int32) int32 {
	if r := a.row[s]; r >= 0 && !a.hit[s] {
		return r * int32(a.nclass)
	}
	return -1
}
