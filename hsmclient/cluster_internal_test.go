package hsmclient

import (
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
)

func TestPoolSizeHonoursTokenLimit(t *testing.T) {
	assert.Equal(t, 15, poolSize(16, pkcs11.CK_EFFECTIVELY_INFINITE), "0 means no token limit; one session is the login anchor")
	assert.Equal(t, 15, poolSize(16, pkcs11.CK_UNAVAILABLE_INFORMATION), "unknown means no token limit")
	assert.Equal(t, 1, poolSize(16, 1), "a one-session token still gets a pool of one")
	assert.Equal(t, 4, poolSize(16, 5))
	assert.Equal(t, 15, poolSize(16, 1024))
}
