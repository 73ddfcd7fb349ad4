package hsmclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/miekg/pkcs11"
)

// KeyType names a kind of key the client can generate and use.
type KeyType string

// Key types, spelled as hsmctl's --type flag takes them.
const (
	KeyECP256      KeyType = "ec-p256"
	KeyECP384      KeyType = "ec-p384"
	KeyECSecp256k1 KeyType = "ec-secp256k1"
	KeyEd25519     KeyType = "ed25519"
	KeyRSA2048     KeyType = "rsa-2048"
	KeyRSA3072     KeyType = "rsa-3072"
	KeyRSA4096     KeyType = "rsa-4096"
	KeyAES256      KeyType = "aes-256"
)

// PKCS#11 3.0 EdDSA constants that miekg/pkcs11 lacks.
const (
	ckkECEdwards           = 0x40
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEdDSA               = 0x1057
	maxLabelLength         = 127
	keyIDLength            = 16
)

// KeyTypes lists every key type the client can generate.
func KeyTypes() []KeyType {
	return []KeyType{KeyECP256, KeyECP384, KeyECSecp256k1, KeyEd25519, KeyRSA2048, KeyRSA3072, KeyRSA4096, KeyAES256}
}

// ParseKeyType checks a key type name such as "ec-p256".
func ParseKeyType(s string) (KeyType, error) {
	for _, t := range KeyTypes() {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w: unknown key type %q (want one of %v)", ErrInvalidInput, s, KeyTypes())
}

// KeyInfo describes a key on the token.
type KeyInfo struct {
	Label string  `json:"label"`
	ID    string  `json:"id"`   // CKA_ID in hex
	Type  KeyType `json:"type"` // a KeyType, or "unknown (...)" for keys this library does not use
	// Public is the public key of an asymmetric key pair: *ecdsa.PublicKey,
	// *secp256k1.PublicKey, ed25519.PublicKey or *rsa.PublicKey. Nil for secret keys.
	Public crypto.PublicKey `json:"-"`
}

// Asymmetric reports whether the key is a key pair.
func (k KeyInfo) Asymmetric() bool { return k.Type != KeyAES256 && spec(k.Type) != nil }

// keySpec is what the token needs to generate, and to recognise, one key type.
type keySpec struct {
	keyType  KeyType
	ckk      uint
	curveOID []byte   // DER OID for EC_PARAMS (EC and Edwards keys)
	aliases  [][]byte // other EC_PARAMS encodings tokens use for the same curve
	rsaBits  int
}

// matchesParams reports whether EC_PARAMS name this spec's curve.
func (ks *keySpec) matchesParams(params []byte) bool {
	if bytes.Equal(ks.curveOID, params) {
		return true
	}
	for _, alias := range ks.aliases {
		if bytes.Equal(alias, params) {
			return true
		}
	}
	return false
}

var keySpecs = []keySpec{
	{keyType: KeyECP256, ckk: pkcs11.CKK_EC, curveOID: oidP256},
	{keyType: KeyECP384, ckk: pkcs11.CKK_EC, curveOID: oidP384},
	{keyType: KeyECSecp256k1, ckk: pkcs11.CKK_EC, curveOID: oidSecp256k1},
	{keyType: KeyEd25519, ckk: ckkECEdwards, curveOID: oidEd25519, aliases: [][]byte{curveNameEdwards25519}},
	{keyType: KeyRSA2048, ckk: pkcs11.CKK_RSA, rsaBits: 2048},
	{keyType: KeyRSA3072, ckk: pkcs11.CKK_RSA, rsaBits: 3072},
	{keyType: KeyRSA4096, ckk: pkcs11.CKK_RSA, rsaBits: 4096},
	{keyType: KeyAES256, ckk: pkcs11.CKK_AES},
}

func spec(t KeyType) *keySpec {
	for i := range keySpecs {
		if keySpecs[i].keyType == t {
			return &keySpecs[i]
		}
	}
	return nil
}

// checkLabel accepts 1 to 127 bytes of printable UTF-8 that are not all
// white space: labels end up in terminals, logs and metrics.
func checkLabel(label string) error {
	if label == "" || len(label) > maxLabelLength || !utf8.ValidString(label) || strings.TrimSpace(label) == "" ||
		strings.IndexFunc(label, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: a key label must be 1 to %d bytes of printable UTF-8, not only spaces", ErrInvalidInput, maxLabelLength)
	}
	return nil
}

// keyClasses are the object classes that make up keys; other objects
// (certificates, data) that share a label are never touched.
var keyClasses = []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_SECRET_KEY}

// findKeyObjects returns every key object (of any key class) carrying label,
// and with id too when id is not nil.
func findKeyObjects(s *session, label string, id []byte) ([]pkcs11.ObjectHandle, error) {
	var all []pkcs11.ObjectHandle
	for _, class := range keyClasses {
		template := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}
		if id != nil {
			template = append(template, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
		}
		handles, err := findObjects(s, template, 0)
		if err != nil {
			return nil, err
		}
		all = append(all, handles...)
	}
	return all, nil
}

// GenerateKey creates a key inside the primary cluster's HSM. Private and
// secret keys are token objects, private, sensitive and never extractable.
// A label already in use is refused with ErrKeyExists, also when another
// process generates the same label at the same moment. Key creation never
// fails over: the DR cluster receives new keys with the next backup.
func (c *Client) GenerateKey(ctx context.Context, label string, t KeyType) (KeyInfo, error) {
	ks := spec(t)
	if ks == nil {
		_, err := ParseKeyType(string(t))
		return KeyInfo{}, &OpError{Op: "generate-key", Err: err}
	}
	if err := checkLabel(label); err != nil {
		return KeyInfo{}, &OpError{Op: "generate-key", Err: err}
	}
	id := make([]byte, keyIDLength)
	if _, err := rand.Read(id); err != nil {
		return KeyInfo{}, &OpError{Op: "generate-key", Err: err}
	}
	c.genMu.Lock() // one generation at a time in this process; see claimLabel for other processes
	defer c.genMu.Unlock()
	info, err := run(ctx, c, operation[KeyInfo]{name: "generate-key", slow: true, run: func(cl *cluster, s *session) (KeyInfo, error) {
		existing, err := findObjects(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
		if err != nil {
			return KeyInfo{}, err
		}
		if len(existing) > 0 {
			return KeyInfo{}, fmt.Errorf("%w: %q", ErrKeyExists, label)
		}
		cl.forgetKey(label)
		if err := ks.generate(s, label, id); err != nil {
			return KeyInfo{}, err
		}
		if err := claimLabel(s, label, id); err != nil {
			return KeyInfo{}, err
		}
		return readKeyInfo(s, label, ks)
	}})
	if errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return KeyInfo{}, fmt.Errorf("%w (the HSM may still create key %q: check ListKeys before trying again)", err, label)
	}
	if err != nil {
		return KeyInfo{}, err
	}
	c.settings.Logger.Info("key generated", "label", label, "type", string(t), "id", info.ID)
	return info, nil
}

// claimLabel checks, after generation, that no other key took the same label
// meanwhile (another process between our check and our generation). If one
// did, it destroys the key just made, by its CKA_ID, and reports ErrKeyExists.
func claimLabel(s *session, label string, id []byte) error {
	all, err := findKeyObjects(s, label, nil)
	if err != nil {
		return err
	}
	ours, err := findKeyObjects(s, label, id)
	if err != nil {
		return err
	}
	if len(all) == len(ours) {
		return nil
	}
	for _, h := range ours {
		if err := s.ctx.DestroyObject(s.h, h); err != nil {
			return fmt.Errorf("remove duplicate key %q: %w", label, err)
		}
	}
	return fmt.Errorf("%w: %q was created by someone else at the same time", ErrKeyExists, label)
}

func (ks *keySpec) generate(s *session, label string, id []byte) error {
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ks.ckk),
	}
	secret := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	}
	if ks.ckk == pkcs11.CKK_AES {
		template := append(append(common, secret...),
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true))
		_, err := s.ctx.GenerateKey(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, template)
		return wrapf(err, "generate AES key")
	}
	public := append(append([]*pkcs11.Attribute{}, common...),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true))
	private := append(append(append([]*pkcs11.Attribute{}, common...), secret...),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true))
	var mech uint
	switch ks.ckk {
	case pkcs11.CKK_RSA:
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		public = append(public,
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, ks.rsaBits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true))
		private = append(private, pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true))
	case pkcs11.CKK_EC:
		mech = pkcs11.CKM_EC_KEY_PAIR_GEN
		public = append(public, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ks.curveOID))
	case ckkECEdwards:
		mech = ckmECEdwardsKeyPairGen
		public = append(public, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ks.curveOID))
	}
	_, _, err := s.ctx.GenerateKeyPair(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, public, private)
	return wrapf(err, "generate %s key pair", ks.keyType)
}

func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// attribute reads one attribute, returning nil when the object lacks it.
func attribute(s *session, h pkcs11.ObjectHandle, attr uint) ([]byte, error) {
	attrs, err := s.ctx.GetAttributeValue(s.h, h, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
	if err != nil {
		if code, ok := pkcs11Code(err); ok && (code == pkcs11.CKR_ATTRIBUTE_TYPE_INVALID || code == pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
			return nil, nil
		}
		return nil, err
	}
	return attrs[0].Value, nil
}

func attributeUint(s *session, h pkcs11.ObjectHandle, attr uint) (uint, bool, error) {
	v, err := attribute(s, h, attr)
	if err != nil || len(v) == 0 {
		return 0, false, err
	}
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v)), true, nil
	case 4:
		return uint(binary.NativeEndian.Uint32(v)), true, nil
	}
	return 0, false, fmt.Errorf("attribute %#x: %d bytes is not a CK_ULONG", attr, len(v))
}

// identify works out an object's KeyType from its attributes; keys this
// library does not use get a descriptive "unknown" type instead of an error.
func identify(s *session, h pkcs11.ObjectHandle) (KeyType, error) {
	ckk, ok, err := attributeUint(s, h, pkcs11.CKA_KEY_TYPE)
	if err != nil || !ok {
		return "unknown", err
	}
	switch ckk {
	case pkcs11.CKK_EC, ckkECEdwards:
		params, err := attribute(s, h, pkcs11.CKA_EC_PARAMS)
		if err != nil {
			return "", err
		}
		for _, ks := range keySpecs {
			if ks.ckk == ckk && ks.matchesParams(params) {
				return ks.keyType, nil
			}
		}
		return KeyType(fmt.Sprintf("unknown (EC params %x)", params)), nil
	case pkcs11.CKK_RSA:
		modulus, err := attribute(s, h, pkcs11.CKA_MODULUS)
		if err != nil {
			return "", err
		}
		bits := new(big.Int).SetBytes(modulus).BitLen()
		for _, ks := range keySpecs {
			if ks.ckk == ckk && ks.rsaBits == bits {
				return ks.keyType, nil
			}
		}
		return KeyType(fmt.Sprintf("unknown (RSA %d bits)", bits)), nil
	case pkcs11.CKK_AES:
		n, _, err := attributeUint(s, h, pkcs11.CKA_VALUE_LEN)
		if err != nil {
			return "", err
		}
		if n == 32 {
			return KeyAES256, nil
		}
		return KeyType(fmt.Sprintf("unknown (AES %d bits)", n*8)), nil
	}
	return KeyType(fmt.Sprintf("unknown (CKK %#x)", ckk)), nil
}

// readKeyInfo reads a key's type, ID and, for key pairs, its public half.
func readKeyInfo(s *session, label string, want *keySpec) (KeyInfo, error) {
	for _, class := range []uint{pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_SECRET_KEY} {
		handles, err := findObjects(s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}, 1)
		if err != nil {
			return KeyInfo{}, err
		}
		if len(handles) == 0 {
			continue
		}
		h := handles[0]
		info := KeyInfo{Label: label}
		if info.Type, err = identify(s, h); err != nil {
			return KeyInfo{}, err
		}
		id, err := attribute(s, h, pkcs11.CKA_ID)
		if err != nil {
			return KeyInfo{}, err
		}
		info.ID = hex.EncodeToString(id)
		if want != nil && info.Type != want.keyType {
			return KeyInfo{}, fmt.Errorf("%w: key %q is %s, not %s", ErrWrongKeyType, label, info.Type, want.keyType)
		}
		if class == pkcs11.CKO_PUBLIC_KEY && spec(info.Type) != nil {
			if info.Public, err = readPublicKey(s, h, info.Type); err != nil {
				return KeyInfo{}, fmt.Errorf("public key %q: %w", label, err)
			}
		}
		return info, nil
	}
	return KeyInfo{}, fmt.Errorf("%w: %q", ErrKeyNotFound, label)
}

// readPublicKey parses the public-key object of a known key type.
func readPublicKey(s *session, h pkcs11.ObjectHandle, t KeyType) (crypto.PublicKey, error) {
	if spec(t).ckk == pkcs11.CKK_RSA {
		modulus, err := attribute(s, h, pkcs11.CKA_MODULUS)
		if err != nil {
			return nil, err
		}
		exponent, err := attribute(s, h, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, err
		}
		return parseRSAPublicKey(modulus, exponent)
	}
	point, err := attribute(s, h, pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	return parseECPoint(t, point)
}

// KeyInfo returns a key's description and public key. The answer is cached:
// the token is asked once per label.
func (c *Client) KeyInfo(ctx context.Context, label string) (KeyInfo, error) {
	if err := checkLabel(label); err != nil {
		return KeyInfo{}, &OpError{Op: "key-info", Err: err}
	}
	c.pubMu.RLock()
	info, ok := c.pubs[label]
	c.pubMu.RUnlock()
	if ok {
		return info, nil
	}
	info, err := run(ctx, c, operation[KeyInfo]{name: "key-info", failover: true, run: func(_ *cluster, s *session) (KeyInfo, error) {
		return readKeyInfo(s, label, nil)
	}})
	if err != nil {
		return KeyInfo{}, err
	}
	c.pubMu.Lock()
	c.pubs[label] = info
	c.pubMu.Unlock()
	return info, nil
}

// PublicKey returns the public half of a key pair.
func (c *Client) PublicKey(ctx context.Context, label string) (crypto.PublicKey, error) {
	info, err := c.KeyInfo(ctx, label)
	if err != nil {
		return nil, err
	}
	if info.Public == nil {
		return nil, &OpError{Op: "public-key", Err: fmt.Errorf("%w: %q (%s) has no public half", ErrWrongKeyType, label, info.Type)}
	}
	return info.Public, nil
}

// ListKeys lists the keys on the highest-priority usable cluster, sorted by label.
func (c *Client) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	return c.listKeys(ctx, "")
}

// ListKeysOn lists the keys on the named cluster.
func (c *Client) ListKeysOn(ctx context.Context, clusterName string) ([]KeyInfo, error) {
	if clusterName == "" {
		return nil, &OpError{Op: "list-keys", Err: fmt.Errorf("%w: empty cluster name", ErrInvalidInput)}
	}
	return c.listKeys(ctx, clusterName)
}

func (c *Client) listKeys(ctx context.Context, clusterName string) ([]KeyInfo, error) {
	return run(ctx, c, operation[[]KeyInfo]{name: "list-keys", failover: true, cluster: clusterName, run: func(_ *cluster, s *session) ([]KeyInfo, error) {
		seen := map[string]bool{}
		var keys []KeyInfo
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY, pkcs11.CKO_PUBLIC_KEY} {
			handles, err := findObjects(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}, 0)
			if err != nil {
				return nil, err
			}
			for _, h := range handles {
				label, err := attribute(s, h, pkcs11.CKA_LABEL)
				if err != nil {
					return nil, err
				}
				id, err := attribute(s, h, pkcs11.CKA_ID)
				if err != nil {
					return nil, err
				}
				key := string(label) + "\x00" + string(id)
				if seen[key] {
					continue
				}
				seen[key] = true
				t, err := identify(s, h)
				if err != nil {
					return nil, err
				}
				keys = append(keys, KeyInfo{Label: string(label), ID: hex.EncodeToString(id), Type: t})
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].Label != keys[j].Label {
				return keys[i].Label < keys[j].Label
			}
			return keys[i].ID < keys[j].ID
		})
		return keys, nil
	}})
}

// DeleteKey destroys every key object with this label (both halves of a key
// pair; certificates and data objects are left alone) on the primary cluster.
// It never fails over.
func (c *Client) DeleteKey(ctx context.Context, label string) error {
	if err := checkLabel(label); err != nil {
		return &OpError{Op: "delete-key", Err: err}
	}
	_, err := run(ctx, c, operation[int]{name: "delete-key", run: func(cl *cluster, s *session) (int, error) {
		handles, err := findKeyObjects(s, label, nil)
		if err != nil {
			return 0, err
		}
		if len(handles) == 0 {
			return 0, fmt.Errorf("%w: %q", ErrKeyNotFound, label)
		}
		cl.forgetKey(label)
		for _, h := range handles {
			if err := s.ctx.DestroyObject(s.h, h); err != nil {
				return 0, fmt.Errorf("destroy object: %w", err)
			}
		}
		return len(handles), nil
	}})
	c.forgetPublic(label)
	if err == nil {
		c.settings.Logger.Info("key deleted", "label", label)
	}
	return err
}

// forgetPublic drops a cached key description, so the next KeyInfo reads the token again.
func (c *Client) forgetPublic(label string) {
	c.pubMu.Lock()
	delete(c.pubs, label)
	c.pubMu.Unlock()
}

// Random returns n random bytes from the HSM's generator (1 to 65536).
func (c *Client) Random(ctx context.Context, n int) ([]byte, error) {
	if n < 1 || n > 65536 {
		return nil, &OpError{Op: "random", Err: fmt.Errorf("%w: length %d is outside 1..65536", ErrInvalidInput, n)}
	}
	return run(ctx, c, operation[[]byte]{name: "random", failover: true, run: func(_ *cluster, s *session) ([]byte, error) {
		b, err := s.ctx.GenerateRandom(s.h, n)
		return b, wrapf(err, "generate random")
	}})
}
