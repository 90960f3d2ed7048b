package project

import (
	"crypto/sha256"

	lru "github.com/hashicorp/golang-lru"
)

// Cache remembers parsed projects by their exact bytes. The same project
// file is submitted over and over (a CI pipeline, a retried job, every
// client of a stored project), and parsing is most of a submit's cost on a
// server. A parsed Project is never modified afterwards, so one may serve
// every submit concurrently.
type Cache struct {
	lru *lru.Cache
}

// MaxCachedSource is the largest source a Cache keeps: bigger files are
// parsed each time rather than pin a lot of memory.
const MaxCachedSource = 64 << 10

// NewCache returns a cache of at most size projects.
func NewCache(size int) *Cache {
	c, err := lru.New(size)
	if err != nil {
		panic(err) // only for size <= 0, a programming error
	}
	return &Cache{lru: c}
}

// Parse is Parse, answered from the cache when the same filename and
// source parsed before. Errors are not cached: a broken file is parsed
// again so its diagnostics come out whole each time.
func (c *Cache) Parse(filename string, src []byte) (*Project, error) {
	if c == nil || len(src) > MaxCachedSource {
		return Parse(filename, src)
	}
	h := sha256.New()
	h.Write([]byte(filename))
	h.Write([]byte{0})
	h.Write(src)
	var key [sha256.Size]byte
	h.Sum(key[:0])
	if p, ok := c.lru.Get(key); ok {
		return p.(*Project), nil
	}
	p, err := Parse(filename, src)
	if err != nil {
		return nil, err
	}
	c.lru.Add(key, p)
	return p, nil
}
