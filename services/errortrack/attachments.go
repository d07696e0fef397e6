package errortrack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/services/errortrack/event"
)

// Attachments up to attachmentInlineMax bytes are kept in the database
// (attachments.data); larger ones (up to Relay's 100 MiB) in the
// errortrack-attachments Object Store bucket, at the bus's replicas, with
// only the object's name in the row.
const (
	attachmentBucket    = "errortrack-attachments"
	attachmentInlineMax = 256 << 10
)

func (s *Service) attachmentStore(ctx context.Context) (jetstream.ObjectStore, error) {
	return s.bus.ObjectStore(ctx, attachmentBucket, "Sentry event attachments larger than 256 KiB")
}

// attachmentObject names the object of an attachment: the project, event
// and position with a digest of the content, so that another envelope's
// attachment at the same place never overwrites one a row names.
func attachmentObject(projectID int64, eventID string, position int, data []byte) string {
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%d/%s/%d/%s", projectID, eventID, position, hex.EncodeToString(sum[:8]))
}

// storeAttachment keeps one attachment item of an envelope. A large one is
// put in the bucket before its row is written in tx: a redelivery after a
// failed commit puts the same object again (same name), and one whose row
// is already there (stored before) is not put at all.
func (s *Service) storeAttachment(ctx context.Context, tx *bus.Tx, projectID int64, eventID string, position int, filename, contentType, attachmentType string, data []byte) error {
	object := ""
	inline := data
	if len(data) > attachmentInlineMax {
		var dup int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM attachments WHERE project_id = $1 AND event_id = $2 AND position = $3`, projectID, eventID, position).Scan(&dup)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		obs, err := s.attachmentStore(ctx)
		if err != nil {
			return err
		}
		object = attachmentObject(projectID, eventID, position, data)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if _, err := obs.Put(pctx, jetstream.ObjectMeta{Name: object, Description: filename}, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("storing attachment %s in %s: %w", object, attachmentBucket, err)
		}
		inline = []byte{}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO attachments (project_id, event_id, position, filename, content_type, attachment_type, data, object, size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		projectID, eventID, position, event.Clean(filename, 255), event.Clean(contentType, 255), event.Clean(attachmentType, 64), inline, object, int64(len(data))); err != nil {
		return fmt.Errorf("storing attachment: %w", err)
	}
	return nil
}

// attachmentRow is an attachment's row without its inline data.
type attachmentRow struct {
	position                                      int
	filename, contentType, attachmentType, object string
	size                                          int64
}

func (a attachmentRow) json(eventID string) map[string]any {
	return map[string]any{
		"id": strconv.Itoa(a.position), "event_id": eventID, "name": a.filename, "type": a.attachmentType,
		"mimetype": a.contentType, "size": a.size, "headers": map[string]string{"Content-Type": a.contentType},
	}
}

const attachmentColumns = `position, filename, content_type, attachment_type, object, size`

func scanAttachment(row interface{ Scan(...any) error }) (attachmentRow, error) {
	var a attachmentRow
	err := row.Scan(&a.position, &a.filename, &a.contentType, &a.attachmentType, &a.object, &a.size)
	return a, err
}

// eventForAttachments resolves the request's project and event id (404
// when the event is not stored).
func (s *Service) eventForAttachments(r *http.Request) (int64, string, error) {
	ctx := r.Context()
	p, err := s.projectBySlug(ctx, r.PathValue("project"))
	if err != nil {
		return 0, "", err
	}
	eid := strings.ReplaceAll(strings.ToLower(r.PathValue("event_id")), "-", "")
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM events WHERE project_id = $1 AND event_id = $2`, p.id, eid).Scan(&one); err != nil {
		return 0, "", err
	}
	return p.id, eid, nil
}

// serveEventAttachments lists an event's attachments (Sentry's
// GET /api/0/projects/{org}/{project}/events/{event_id}/attachments/).
func (s *Service) serveEventAttachments(w http.ResponseWriter, r *http.Request) {
	pid, eid, err := s.eventForAttachments(r)
	if err != nil {
		s.storageError(w, "reading attachments", err)
		return
	}
	rows, err := s.db.QueryContext(r.Context(), `SELECT `+attachmentColumns+` FROM attachments WHERE project_id = $1 AND event_id = $2 ORDER BY position`, pid, eid)
	if err != nil {
		s.storageError(w, "reading attachments", err)
		return
	}
	defer rows.Close()
	out := []map[string]any{}
	for rows.Next() {
		a, err := scanAttachment(rows)
		if err != nil {
			s.storageError(w, "reading attachments", err)
			return
		}
		out = append(out, a.json(eid))
	}
	if err := rows.Err(); err != nil {
		s.storageError(w, "reading attachments", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// serveEventAttachment answers one attachment's details, or with
// ?download=1 its content: inline from the database, or streamed from
// the bucket.
func (s *Service) serveEventAttachment(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	pid, eid, err := s.eventForAttachments(r)
	if err != nil {
		s.storageError(w, "reading attachment", err)
		return
	}
	pos, err := strconv.Atoi(r.PathValue("attachment_id"))
	if err != nil {
		apiNotFound(w)
		return
	}
	a, err := scanAttachment(s.db.QueryRowContext(ctx, `SELECT `+attachmentColumns+` FROM attachments WHERE project_id = $1 AND event_id = $2 AND position = $3`, pid, eid, pos))
	if err != nil {
		s.storageError(w, "reading attachment", err)
		return
	}
	if d := r.URL.Query().Get("download"); d == "" || d == "0" || d == "false" {
		writeJSON(w, http.StatusOK, a.json(eid))
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", a.filename))
	if a.object == "" {
		var data []byte
		if err := s.db.QueryRowContext(ctx, `SELECT data FROM attachments WHERE project_id = $1 AND event_id = $2 AND position = $3`, pid, eid, pos).Scan(&data); err != nil {
			s.storageError(w, "reading attachment", err)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data)
		return
	}
	obs, err := s.attachmentStore(ctx)
	if err != nil {
		s.storageError(w, "reading attachment", err)
		return
	}
	res, err := obs.Get(ctx, a.object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		apiNotFound(w)
		return
	}
	if err != nil {
		s.storageError(w, "reading attachment", err)
		return
	}
	defer res.Close()
	w.Header().Set("Content-Length", strconv.FormatInt(a.size, 10))
	if _, err := io.Copy(w, res); err != nil {
		s.log.Warn("streaming an attachment", "object", a.object, "err", err)
	}
}
