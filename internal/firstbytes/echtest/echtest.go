// Package echtest makes TLS Encrypted Client Hello keys for tests: a server
// key and the client's config list, so that Go's crypto/tls client and
// server speak ECH with each other.
package echtest

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
)

// Key makes an ECH config (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-128-GCM) with public name publicName, as a server key and a client
// config list (draft-ietf-tls-esni ECHConfig, version 0xfe0d).
func Key(publicName string) (tls.EncryptedClientHelloKey, []byte, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return tls.EncryptedClientHelloKey{}, nil, fmt.Errorf("ECH key: %w", err)
	}
	pub := priv.PublicKey().Bytes()
	var c []byte
	c = append(c, 7)                             // config_id
	c = binary.BigEndian.AppendUint16(c, 0x0020) // kem_id
	c = binary.BigEndian.AppendUint16(c, uint16(len(pub)))
	c = append(c, pub...)
	c = binary.BigEndian.AppendUint16(c, 4)      // cipher_suites length
	c = binary.BigEndian.AppendUint16(c, 0x0001) // kdf_id
	c = binary.BigEndian.AppendUint16(c, 0x0001) // aead_id
	c = append(c, 32)                            // maximum_name_length
	c = append(c, byte(len(publicName)))
	c = append(c, publicName...)
	c = binary.BigEndian.AppendUint16(c, 0) // extensions
	config := binary.BigEndian.AppendUint16([]byte{0xfe, 0x0d}, uint16(len(c)))
	config = append(config, c...)
	list := binary.BigEndian.AppendUint16(nil, uint16(len(config)))
	list = append(list, config...)
	return tls.EncryptedClientHelloKey{Config: config, PrivateKey: priv.Bytes(), SendAsRetry: true}, list, nil
}
