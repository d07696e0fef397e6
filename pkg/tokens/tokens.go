// Package tokens stores API tokens (name, scope, SHA-256 of the secret) in
// a JetStream KV bucket, so every shiploop process of a split install sees
// the same tokens, and serves TokenService over gRPC.
package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiploop/shiploop/pkg/server"
	tokensv1 "github.com/shiploop/shiploop/proto/shiploop/tokens/v1"
)

// Bucket is the KV bucket. Keys: "h.<sha256 hex>" -> record,
// "n.<name>" -> the hash (names are unique; revoke goes by name).
const Bucket = "shiploop_tokens"

// secretPrefix marks shiploop tokens (secret scanners can match it).
const secretPrefix = "slp_"

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Errors callers branch on.
var (
	ErrExists   = errors.New("a token with that name exists")
	ErrNotFound = errors.New("no token with that name")
)

// Record is what the bucket keeps of a token; never the secret.
type Record struct {
	Name      string    `json:"name"`
	Scope     string    `json:"scope"`
	Hash      string    `json:"hash"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
}

// Store is the token bucket.
type Store struct {
	kv jetstream.KeyValue
}

// Open creates the bucket if needed.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, Description: "shiploop API tokens (hashed)", Replicas: max(replicas, 1), History: 1})
	if err != nil {
		return nil, fmt.Errorf("tokens: opening bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv}, nil
}

// Create makes a token and returns its secret (shown once).
func (s *Store) Create(ctx context.Context, name string, scope server.Scope) (string, Record, error) {
	if !validName.MatchString(name) {
		return "", Record{}, fmt.Errorf("token name %q: use 1-64 of A-Z a-z 0-9 _ -", name)
	}
	if scope < server.ScopeRead || scope > server.ScopeAdmin {
		return "", Record{}, fmt.Errorf("scope %v: want read, write or admin", scope)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Record{}, err
	}
	secret := secretPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	rec := Record{Name: name, Scope: scope.String(), Hash: server.HashToken(secret), Prefix: secret[:len(secretPrefix)+6], CreatedAt: time.Now().UTC()}
	if _, err := s.kv.Create(ctx, "n."+name, []byte(rec.Hash)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return "", Record{}, fmt.Errorf("token %q: %w (revoke it first or pick another name)", name, ErrExists)
		}
		return "", Record{}, fmt.Errorf("tokens: %w", err)
	}
	b, _ := json.Marshal(rec)
	if _, err := s.kv.Put(ctx, "h."+rec.Hash, b); err != nil {
		_ = s.kv.Delete(ctx, "n."+name)
		return "", Record{}, fmt.Errorf("tokens: %w", err)
	}
	return secret, rec, nil
}

// Revoke deletes a token by name.
func (s *Store) Revoke(ctx context.Context, name string) error {
	e, err := s.kv.Get(ctx, "n."+name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("token %q: %w (see `shiploop token ls`)", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	if err := s.kv.Purge(ctx, "h."+string(e.Value())); err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	if err := s.kv.Purge(ctx, "n."+name); err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	return nil
}

// List returns every token, by name.
func (s *Store) List(ctx context.Context) ([]Record, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, "h.>")
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	var out []Record
	for k := range lister.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue // revoked meanwhile
		}
		var r Record
		if json.Unmarshal(e.Value(), &r) == nil {
			out = append(out, r)
		}
	}
	sortRecords(out)
	return out, nil
}

func sortRecords(rs []Record) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Name < rs[j-1].Name; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// Lookup is a server.TokenLookup over the bucket.
func (s *Store) Lookup(ctx context.Context, hash string) (server.Principal, error) {
	e, err := s.kv.Get(ctx, "h."+hash)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return server.Principal{}, server.ErrUnknownToken
	}
	if err != nil {
		return server.Principal{}, err
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return server.Principal{}, fmt.Errorf("tokens: record %s: %w", hash[:8], err)
	}
	sc, err := server.ParseScope(r.Scope)
	if err != nil {
		return server.Principal{}, err
	}
	return server.Principal{Name: r.Name, Scope: sc}, nil
}

// GRPC serves TokenService (admin only, by server.MethodScope).
type GRPC struct {
	tokensv1.UnimplementedTokenServiceServer
	Store *Store
}

func info(r Record) *tokensv1.TokenInfo {
	return &tokensv1.TokenInfo{Name: r.Name, Scope: r.Scope, CreatedAt: timestamppb.New(r.CreatedAt), Prefix: r.Prefix}
}

// CreateToken implements TokenService.
func (g *GRPC) CreateToken(ctx context.Context, req *tokensv1.CreateTokenRequest) (*tokensv1.CreateTokenResponse, error) {
	sc, err := server.ParseScope(req.GetScope())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "scope: %v", err)
	}
	if !validName.MatchString(req.GetName()) {
		return nil, status.Errorf(codes.InvalidArgument, "name %q: use 1-64 of A-Z a-z 0-9 _ -", req.GetName())
	}
	secret, rec, err := g.Store.Create(ctx, req.GetName(), sc)
	if errors.Is(err, ErrExists) {
		return nil, status.Error(codes.AlreadyExists, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &tokensv1.CreateTokenResponse{Token: info(rec), Secret: secret}, nil
}

// RevokeToken implements TokenService.
func (g *GRPC) RevokeToken(ctx context.Context, req *tokensv1.RevokeTokenRequest) (*tokensv1.RevokeTokenResponse, error) {
	if strings.TrimSpace(req.GetName()) == "" {
		return nil, status.Error(codes.InvalidArgument, "name: required")
	}
	err := g.Store.Revoke(ctx, req.GetName())
	if errors.Is(err, ErrNotFound) {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &tokensv1.RevokeTokenResponse{}, nil
}

// ListTokens implements TokenService.
func (g *GRPC) ListTokens(ctx context.Context, _ *tokensv1.ListTokensRequest) (*tokensv1.ListTokensResponse, error) {
	rs, err := g.Store.List(ctx)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := &tokensv1.ListTokensResponse{}
	for _, r := range rs {
		out.Tokens = append(out.Tokens, info(r))
	}
	return out, nil
}
