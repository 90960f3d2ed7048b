package acl

import (
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	cases := []struct {
		name, src string
		want      *Policy
		err       string
	}{
		{"every area", `
project "web" { policy = "submit" }
project "*"   { policy = "read" }
runner   { policy = "register" }
operator { policy = "write" }
acl = "read"
`, &Policy{Projects: []ProjectRule{{"web", Submit}, {"*", Read}}, Runner: Register, Operator: Write, ACL: Read}, ""},
		{"empty grants nothing", ``, &Policy{}, ""},
		{"bad project level", `project "web" { policy = "write" }`, nil, `p.hcl:1:26: Invalid policy: project policy "write": want one of "admin", "read", "submit"`},
		{"bad runner level", "runner {\n  policy = \"read\"\n}", nil, `p.hcl:2:12: Invalid policy`},
		{"bad acl level", `acl = "admin"`, nil, `p.hcl:1:7: Invalid policy: acl policy "admin"`},
		{"unknown key", `projects "x" { policy = "read" }`, nil, `p.hcl:1:1: Unsupported block type`},
		{"missing policy", `project "x" {}`, nil, `p.hcl:1:13: Missing required argument`},
		{"duplicate", "project \"x\" { policy = \"read\" }\nproject \"x\" { policy = \"admin\" }", nil, "p.hcl:2:1: Duplicate project rule"},
		{"bad pattern", `project "a b" { policy = "read" }`, nil, "p.hcl:1:1: Invalid project pattern"},
		{"bad glob", `project "[" { policy = "read" }`, nil, "p.hcl:1:1: Invalid project pattern"},
		{"not a string", `acl = 3`, nil, `p.hcl:1:7: Invalid policy: acl policy "3"`},
		{"syntax", `project "x" {`, nil, "p.hcl:1:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePolicy("p.hcl", []byte(tc.src))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Projects) != len(tc.want.Projects) || got.Runner != tc.want.Runner || got.Operator != tc.want.Operator || got.ACL != tc.want.ACL {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got.Projects {
				if got.Projects[i] != tc.want.Projects[i] {
					t.Fatalf("rule %d = %+v, want %+v", i, got.Projects[i], tc.want.Projects[i])
				}
			}
		})
	}
}

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy("p.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthorizer(t *testing.T) {
	base := mustParse(t, `
project "*"      { policy = "read" }
project "web-*"  { policy = "submit" }
project "web-db" { policy = "read" }
project "ops"    { policy = "admin" }
runner { policy = "register" }
`)
	more := mustParse(t, `
project "web-*" { policy = "admin" }
operator { policy = "read" }
`)
	cases := []struct {
		name    string
		a       *Authorizer
		area    Area
		level   Level
		project string
		want    bool
	}{
		{"glob read", NewAuthorizer(base), AreaProject, Read, "anything", true},
		{"glob not submit", NewAuthorizer(base), AreaProject, Submit, "anything", false},
		{"longer glob wins", NewAuthorizer(base), AreaProject, Submit, "web-app", true},
		{"exact wins over glob, even lower", NewAuthorizer(base), AreaProject, Submit, "web-db", false},
		{"exact admin", NewAuthorizer(base), AreaProject, Admin, "ops", true},
		{"admin includes submit", NewAuthorizer(base), AreaProject, Submit, "ops", true},
		{"runner register", NewAuthorizer(base), AreaRunner, Register, "", true},
		{"runner not admin", NewAuthorizer(base), AreaRunner, Admin, "", false},
		{"no operator", NewAuthorizer(base), AreaOperator, Read, "", false},
		{"no acl", NewAuthorizer(base), AreaACL, Read, "", false},
		{"merge: same pattern takes the higher", NewAuthorizer(base, more), AreaProject, Admin, "web-app", true},
		{"merge: exact still wins", NewAuthorizer(base, more), AreaProject, Submit, "web-db", false},
		{"merge: operator read", NewAuthorizer(base, more), AreaOperator, Read, "", true},
		{"merge: not operator write", NewAuthorizer(base, more), AreaOperator, Write, "", false},
		{"any project submit", NewAuthorizer(base), AreaProject, Submit, "", true},
		{"any project admin", NewAuthorizer(mustParse(t, `project "a" { policy = "read" }`)), AreaProject, Admin, "", false},
		{"nothing", NewAuthorizer(), AreaProject, Read, "x", false},
		{"deny", Deny(), AreaACL, Read, "", false},
		{"management", Management(), AreaACL, Write, "", true},
		{"management project", Management(), AreaProject, Admin, "x", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Allows(tc.area, tc.level, tc.project); got != tc.want {
				t.Fatalf("Allows(%s, %s, %q) = %t, want %t", tc.area, LevelName(tc.area, tc.level), tc.project, got, tc.want)
			}
		})
	}
}

func TestNeedNamesTheCapability(t *testing.T) {
	if got := Need(AreaProject, Submit, "web"); got != `project "web" submit` {
		t.Errorf("Need = %q", got)
	}
	if got := Need(AreaOperator, Write, ""); got != "operator write" {
		t.Errorf("Need = %q", got)
	}
}

func TestPassword(t *testing.T) {
	p := PasswordParams{Time: 1, MemoryKiB: 1024, Threads: 1}
	hash, salt, err := HashPassword("correct horse", p)
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword("correct horse", hash, salt, p) {
		t.Error("right password refused")
	}
	if CheckPassword("correct horsE", hash, salt, p) {
		t.Error("wrong password accepted")
	}
	h2, s2, _ := HashPassword("correct horse", p)
	if string(s2) == string(salt) || string(h2) == string(hash) {
		t.Error("two hashes of one password share a salt")
	}
	if _, _, err := HashPassword("short", p); err == nil {
		t.Error("a short password was accepted")
	}
}

// TestThrottle: five failures within the window lock the key out, for
// twice as long each time; a reset clears it; keys are independent.
func TestThrottle(t *testing.T) {
	now := time.Unix(1000, 0)
	th := NewThrottle(MaxUserFailures)
	th.Now = func() time.Time { return now }
	for i := 0; i < 4; i++ {
		th.Fail("user:ann")
	}
	if w := th.Check("user:ann"); w != 0 {
		t.Fatalf("after 4 failures: wait %s, want none", w)
	}
	th.Fail("user:ann")
	if w := th.Check("user:ann"); w != 30*time.Second {
		t.Fatalf("after 5 failures: wait %s, want 30s", w)
	}
	if w := th.Check("user:bob"); w != 0 {
		t.Fatalf("another key waits %s", w)
	}
	now = now.Add(31 * time.Second)
	if w := th.Check("user:ann"); w != 0 {
		t.Fatalf("after the lockout: wait %s", w)
	}
	for i := 0; i < 5; i++ {
		th.Fail("user:ann")
	}
	if w := th.Check("user:ann"); w != time.Minute {
		t.Fatalf("second lockout: wait %s, want 1m (doubled)", w)
	}
	th.Reset("user:ann")
	if w := th.Check("user:ann"); w != 0 {
		t.Fatalf("after reset: wait %s", w)
	}
	// Failures spread out beyond the window do not add up.
	for i := 0; i < 10; i++ {
		th.Fail("addr:1.2.3.4")
		now = now.Add(20 * time.Second)
	}
	if w := th.Check("addr:1.2.3.4"); w != 0 {
		t.Fatalf("slow failures: wait %s, want none", w)
	}
}

// FuzzParsePolicy: no input makes the parser panic; what parses gives
// levels the areas know. The seed corpus is in testdata/fuzz.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`project "web" { policy = "read" }`))
	f.Add([]byte("project \"*\" { policy = \"admin\" }\nrunner { policy = \"register\" }\noperator { policy = \"write\" }\nacl = \"write\"\n"))
	f.Add([]byte(`project "[a-" { policy = "read" }`))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := ParsePolicy("fuzz.hcl", src)
		if err != nil {
			return
		}
		for _, r := range p.Projects {
			if r.Level < Read || r.Level > Admin {
				t.Fatalf("rule %+v has a level no word gives", r)
			}
		}
		_ = NewAuthorizer(p).Project("web")
	})
}
