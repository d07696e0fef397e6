package dashboards

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// issuePage is /errors/{issue}: what Sentry's issue page shows, read over
// gRPC from errortrack (Config.Errors): the issue's title, culprit,
// counts, first and last seen, releases and suspect commits, one event
// (the latest, or ?event=ID) with its exception chain, in-app frames with
// context lines (?frames=all for every frame), tags, user, request and
// breadcrumbs, and the issue's recent events. Without Config.Errors the
// page shows what the dashboards' read model holds (the issue events).
type issuePage struct {
	ID        int64
	Issue     *errortrackv1.Issue
	Event     *errortrackv1.ErrorEvent
	Events    []*errortrackv1.ErrorEvent
	AllFrames bool
	// Raw: the event's stack traces as sent, not symbolicated (?raw=1).
	Raw bool
	// Seen is the read model's record of the issue (opened, regressed...).
	Seen []issueView
	// Note says why event details are missing.
	Note string
}

// Symbolicated: errortrack mapped the event's frames through uploaded
// source maps (it kept the frames as sent as raw_stacktrace).
func (p *issuePage) Symbolicated() bool {
	return strings.Contains(p.Event.GetJson(), `"raw_stacktrace"`)
}

// StatusWord is the issue's status as the CLI says it ("unresolved").
func (p *issuePage) StatusWord() string {
	return strings.ToLower(strings.TrimPrefix(p.Issue.GetStatus().String(), "ISSUE_STATUS_"))
}

// exceptionView is one exception, raised one first, then its causes.
type exceptionView struct {
	Ex       *errortrackv1.ExceptionValue
	CausedBy bool
	Frames   []frameView
	Hidden   int
}

type frameView struct {
	F      *errortrackv1.StackFrame
	Lines  []ctxLine
	Folded int // system frames folded before this one
}

type ctxLine struct {
	No      int
	Text    string
	Current bool
}

// Exceptions lists the chain as Sentry does: the raised exception first.
func (p *issuePage) Exceptions() []exceptionView {
	exs := p.Event.GetDetail().GetExceptions()
	var out []exceptionView
	for i := len(exs) - 1; i >= 0; i-- {
		fs, hidden := p.frames(exs[i].GetFrames())
		out = append(out, exceptionView{Ex: exs[i], CausedBy: i < len(exs)-1, Frames: fs, Hidden: hidden})
	}
	return out
}

// Stack is a message event's stack (no exception).
func (p *issuePage) Stack() []frameView {
	if len(p.Event.GetDetail().GetExceptions()) > 0 {
		return nil
	}
	fs, _ := p.frames(p.Event.GetDetail().GetFrames())
	return fs
}

// frames keeps in-app frames (all with AllFrames, or when none is in
// app), innermost last, each with its numbered context lines.
func (p *issuePage) frames(in []*errortrackv1.StackFrame) ([]frameView, int) {
	anyInApp := false
	for _, f := range in {
		anyInApp = anyInApp || f.GetInApp()
	}
	var out []frameView
	folded, hidden := 0, 0
	for _, f := range in {
		if !p.AllFrames && anyInApp && !f.GetInApp() {
			folded++
			hidden++
			continue
		}
		fv := frameView{F: f, Folded: folded}
		folded = 0
		if f.GetContextLine() != "" {
			n := int(f.GetLineno())
			for i, l := range f.GetPreContext() {
				fv.Lines = append(fv.Lines, ctxLine{No: n - len(f.GetPreContext()) + i, Text: l})
			}
			fv.Lines = append(fv.Lines, ctxLine{No: n, Text: f.GetContextLine(), Current: true})
			for i, l := range f.GetPostContext() {
				fv.Lines = append(fv.Lines, ctxLine{No: n + 1 + i, Text: l})
			}
		}
		out = append(out, fv)
	}
	if folded > 0 {
		out = append(out, frameView{Folded: folded})
	}
	return out, hidden
}

func (p *pages) errorIssue(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("issue"), 10, 64)
	if err != nil || id <= 0 {
		http.Error(w, "issue id: not a number", http.StatusBadRequest)
		return
	}
	pg := &issuePage{ID: id, AllFrames: r.URL.Query().Get("frames") == "all"}
	pg.Seen, err = p.s.issues(r.Context(), `WHERE issue_id = $1 ORDER BY at DESC`, id)
	if err != nil {
		p.fail(w, err)
		return
	}
	cl := p.s.cfg.Errors
	if cl == nil {
		if len(pg.Seen) == 0 {
			p.fail(w, fmt.Errorf("issue %d: %w", id, errNotFound))
			return
		}
		pg.Note = "Stack traces and events come from errortrack, which this server does not reach."
		p.render(w, "error_issue", pageData{Title: "Issue " + strconv.FormatInt(id, 10), Nav: "errors", Data: pg})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	is, err := cl.GetIssue(ctx, &errortrackv1.GetIssueRequest{Id: id})
	if status.Code(err) == codes.NotFound {
		p.fail(w, fmt.Errorf("issue %d: %w", id, errNotFound))
		return
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	pg.Issue = is.GetIssue()
	evs, err := cl.ListIssueEvents(ctx, &errortrackv1.ListIssueEventsRequest{IssueId: id, PageSize: 20})
	if err != nil {
		p.fail(w, err)
		return
	}
	pg.Events = evs.GetEvents()
	if want := r.URL.Query().Get("event"); want != "" {
		ev, err := cl.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: want, Project: strconv.FormatInt(pg.Issue.GetProjectId(), 10)})
		switch {
		case status.Code(err) == codes.NotFound || (err == nil && ev.GetEvent().GetIssueId() != id):
			p.fail(w, fmt.Errorf("event %s of issue %d: %w", want, id, errNotFound))
			return
		case status.Code(err) == codes.InvalidArgument:
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			p.fail(w, err)
			return
		}
		pg.Event = ev.GetEvent()
	} else if len(pg.Events) > 0 {
		pg.Event = pg.Events[0]
	}
	// ?raw=1: the stack traces as sent (minified JavaScript), not
	// symbolicated with uploaded source maps.
	if pg.Raw = r.URL.Query().Get("raw") == "1"; pg.Raw && pg.Event != nil {
		ev, err := cl.GetEvent(ctx, &errortrackv1.GetEventRequest{EventId: pg.Event.GetEventId(), Project: strconv.FormatInt(pg.Issue.GetProjectId(), 10), Raw: true})
		if err != nil {
			p.fail(w, err)
			return
		}
		pg.Event = ev.GetEvent()
	}
	p.render(w, "error_issue", pageData{Title: pg.Issue.GetTitle(), Nav: "errors", Data: pg})
}
