package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// txAttempts bounds how often InTx runs fn when the engine reports a conflict; between attempts
// it waits a random time up to a doubling bound, so contending transactions spread out.
const (
	txAttempts     = 10
	txBackoffFirst = 5 * time.Millisecond
	txBackoffMax   = 500 * time.Millisecond
)

// InTx runs fn in a transaction: it commits if fn returns nil and rolls back otherwise, returning
// fn's error unchanged. If the engine reports a conflict (SQLITE_BUSY, or PostgreSQL
// serialization_failure 40001 or deadlock_detected 40P01) at begin, in fn or at commit, InTx
// rolls back and runs fn again, a few times, so fn must have no effects outside tx.
//
// On SQLite the pool has one connection: inside fn use tx only, never db.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.InTxOptions(ctx, nil, fn)
}

// InTxOptions is [DB.InTx] with transaction options, such as sql.LevelSerializable on
// PostgreSQL (SQLite transactions are always serializable and ignore the level) or ReadOnly,
// which on SQLite begins without taking the write lock.
func (db *DB) InTxOptions(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	backoff := txBackoffFirst
	for attempt := 1; ; attempt++ {
		err := db.runTx(ctx, opts, fn)
		if err == nil || !isConflict(err) {
			return err
		}
		if attempt == txAttempts {
			return fmt.Errorf("transaction gave up after %d attempts: %w", attempt, err)
		}
		wait := time.NewTimer(rand.N(backoff) + 1)
		select {
		case <-ctx.Done():
			wait.Stop()
			return errors.Join(ctx.Err(), err)
		case <-wait.C:
		}
		backoff = min(2*backoff, txBackoffMax)
	}
}

func (db *DB) runTx(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		// The rollback error adds nothing: fn's error says why, and a failed rollback ends
		// the transaction anyway (database/sql discards the connection).
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}
