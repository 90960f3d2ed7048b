package acl

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's parameters; they are stored with each
// hash, so raising them later keeps old passwords working.
type PasswordParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// DefaultPasswordParams are RFC 9106's second recommended setting
// (t=3, 64 MiB), with 2 lanes: a login costs tens of milliseconds.
var DefaultPasswordParams = PasswordParams{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 8

// HashPassword returns a fresh salt and argon2id(password, salt).
func HashPassword(password string, p PasswordParams) (hash, salt []byte, err error) {
	if len(password) < MinPasswordLength {
		return nil, nil, fmt.Errorf("password: at least %d characters are required", MinPasswordLength)
	}
	if len(password) > 1024 {
		return nil, nil, fmt.Errorf("password: at most 1024 characters")
	}
	salt = make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, nil, fmt.Errorf("password: salt: %w", err)
	}
	return argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32), salt, nil
}

// CheckPassword reports whether password hashes to hash under salt and p,
// in constant time.
func CheckPassword(password string, hash, salt []byte, p PasswordParams) bool {
	if len(hash) == 0 || p.Time == 0 || p.MemoryKiB == 0 || p.Threads == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(hash)))
	return subtle.ConstantTimeCompare(got, hash) == 1
}
