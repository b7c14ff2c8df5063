package loader

// idPool hands out the ids below a limit, reusing freed ones oldest first so that a freed id,
// which stale flows may still name, is reused as late as possible.
type idPool struct {
	next, limit uint32
	free        []uint32
}

func newIDPool(limit uint32) *idPool { return &idPool{limit: limit} }

// get returns an unused id, or false when all are taken.
func (p *idPool) get() (uint32, bool) {
	if len(p.free) > 0 {
		id := p.free[0]
		p.free = p.free[1:]
		return id, true
	}
	if p.next >= p.limit {
		return 0, false
	}
	p.next++
	return p.next - 1, true
}

// put returns id to the pool.
func (p *idPool) put(id uint32) { p.free = append(p.free, id) }
