package project

import (
	"testing"
)

func TestCacheReturnsTheSameProjectAndSkipsErrors(t *testing.T) {
	c := NewCache(2)
	src := []byte("project = \"web\"\njob \"build\" {\n  step \"make\" { command = [\"make\"] }\n}\n")
	a, err := c.Parse("outpost.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Parse("outpost.hcl", append([]byte(nil), src...))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("the same source parsed twice; want the cached project")
	}
	if other, _ := c.Parse("other.hcl", src); other == a {
		t.Error("another filename shares the cached project; positions in errors would name the wrong file")
	}
	bad := []byte("project = \n")
	for range 2 {
		if _, err := c.Parse("outpost.hcl", bad); err == nil {
			t.Fatal("a broken file parsed")
		}
	}
	if c.lru.Len() != 2 {
		t.Errorf("cache holds %d entries, want 2 (errors are not cached)", c.lru.Len())
	}
	if _, err := (*Cache)(nil).Parse("outpost.hcl", src); err != nil {
		t.Errorf("a nil cache must parse: %v", err)
	}
}
