package forge

// Authentication of deliveries. Every comparison with secret material is
// constant-time (hmac.Equal, subtle.ConstantTimeCompare); errors name the
// header but never echo its value, the secret or the expected value.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// Verify checks that a delivery was made by someone who knows the
// repository's webhook secret:
//
//   - github: X-Hub-Signature-256 "sha256=<hex HMAC-SHA256 of the body>"
//     (the legacy SHA-1 X-Hub-Signature is not accepted);
//   - gitlab: X-Gitlab-Token equal to the secret (GitLab does not sign);
//   - gitea: X-Gitea-Signature, the bare hex HMAC-SHA256;
//   - forgejo: X-Forgejo-Signature, or X-Gitea-Signature when absent;
//   - bitbucket: X-Hub-Signature "sha256=<hex>" (Cloud and Data Center);
//   - generic: X-Shiploop-Signature "sha256=<hex>", or else
//     Authorization: Bearer <secret>.
//
// body must be the raw bytes received, not re-encoded JSON. It returns nil
// or an error wrapping ErrUnauthorized. An empty secret never verifies.
func Verify(forge string, header http.Header, body []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("%w: repository has no webhook secret", ErrUnauthorized)
	}
	switch forge {
	case GitHub:
		return verifyHMAC(header, "X-Hub-Signature-256", "sha256=", body, secret)
	case GitLab:
		return verifyToken("X-Gitlab-Token", header.Get("X-Gitlab-Token"), secret)
	case Gitea:
		return verifyHMAC(header, "X-Gitea-Signature", "", body, secret)
	case Forgejo:
		name := "X-Forgejo-Signature"
		if header.Get(name) == "" && header.Get("X-Gitea-Signature") != "" {
			name = "X-Gitea-Signature"
		}
		return verifyHMAC(header, name, "", body, secret)
	case Bitbucket:
		return verifyHMAC(header, "X-Hub-Signature", "sha256=", body, secret)
	case Generic:
		auth := header.Get("Authorization")
		switch {
		case header.Get("X-Shiploop-Signature") != "":
			return verifyHMAC(header, "X-Shiploop-Signature", "sha256=", body, secret)
		case auth == "":
			return fmt.Errorf("%w: missing X-Shiploop-Signature or Authorization header", ErrUnauthorized)
		}
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return fmt.Errorf("%w: malformed Authorization header, want Bearer <secret>", ErrUnauthorized)
		}
		return verifyToken("Authorization", strings.TrimSpace(token), secret)
	}
	return fmt.Errorf("%w: %w %q", ErrUnauthorized, ErrUnknownForge, forge)
}

// verifyHMAC checks header name carries prefix followed by the hex
// HMAC-SHA256 of body keyed with secret.
func verifyHMAC(header http.Header, name, prefix string, body []byte, secret string) error {
	value := header.Get(name)
	if value == "" {
		return fmt.Errorf("%w: missing %s header", ErrUnauthorized, name)
	}
	hexSig, ok := strings.CutPrefix(value, prefix)
	if !ok {
		return fmt.Errorf("%w: malformed %s header, want %s<hex HMAC-SHA256>", ErrUnauthorized, name, prefix)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: malformed %s header, want %s<hex HMAC-SHA256>", ErrUnauthorized, name, prefix)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%w: %s does not match the body", ErrUnauthorized, name)
	}
	return nil
}

// verifyToken compares a shared token with the secret. Both are hashed
// first so the comparison takes the same time whatever their lengths.
func verifyToken(name, token, secret string) error {
	if token == "" {
		return fmt.Errorf("%w: missing %s header", ErrUnauthorized, name)
	}
	got := sha256.Sum256([]byte(token))
	want := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return fmt.Errorf("%w: %s does not match the secret", ErrUnauthorized, name)
	}
	return nil
}
