package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	errortrackv1 "github.com/shiploop/shiploop/proto/shiploop/errortrack/v1"
)

// printIssue prints an issue as Sentry's issue page shows it: the header
// (title, culprit, counts, first and last seen, releases, first deploy,
// suspect commits), then its latest event.
func printIssue(w io.Writer, is *errortrackv1.Issue, latest *errortrackv1.ErrorEvent, allFrames bool) {
	fmt.Fprintf(w, "issue %d  %s  [%s]\n", is.GetId(), is.GetTitle(), issueStatusWord(is))
	if is.GetShortId() != "" {
		fmt.Fprintf(w, "  short id    %s\n", is.GetShortId())
	}
	fmt.Fprintf(w, "  project     %s\n", is.GetProject())
	if is.GetCulprit() != "" {
		fmt.Fprintf(w, "  culprit     %s\n", is.GetCulprit())
	}
	fmt.Fprintf(w, "  level       %s\n", is.GetLevel())
	fmt.Fprintf(w, "  events      %d   users %d\n", is.GetTimesSeen(), is.GetUsers())
	fmt.Fprintf(w, "  first seen  %s  in %s\n", stamp(is.GetFirstSeen().AsTime()), orDefault(is.GetFirstRelease(), "(no release)"))
	fmt.Fprintf(w, "  last seen   %s  in %s\n", stamp(is.GetLastSeen().AsTime()), orDefault(is.GetLastRelease(), "(no release)"))
	if is.GetResolvedInRelease() != "" {
		fmt.Fprintf(w, "  resolved    in %s\n", is.GetResolvedInRelease())
	}
	if len(is.GetReleases()) > 0 {
		fmt.Fprintln(w, "  releases")
		for _, r := range is.GetReleases() {
			fmt.Fprintf(w, "    %-24s %-12s %d events, %s .. %s\n", orDefault(r.GetRelease(), "(no release)"), r.GetEnvironment(), r.GetTimesSeen(),
				stamp(r.GetFirstSeen().AsTime()), stamp(r.GetLastSeen().AsTime()))
		}
	}
	if d := is.GetFirstDeploy(); d != nil {
		fmt.Fprintf(w, "  first deploy  %s of %s to %s at %s\n", d.GetId(), d.GetRelease(), d.GetEnvironment(), stamp(d.GetDeployedAt().AsTime()))
	}
	printSuspects(w, is.GetSuspectCommits())
	if latest != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "latest event %s\n", latest.GetEventId())
		printEventBody(w, latest, allFrames)
	}
}

func printSuspects(w io.Writer, cs []*errortrackv1.SuspectCommit) {
	if len(cs) == 0 {
		return
	}
	fmt.Fprintln(w, "  suspect commits")
	for _, c := range cs {
		files := ""
		if len(c.GetMatchedFiles()) > 0 {
			files = "  touched " + strings.Join(c.GetMatchedFiles(), ", ")
		}
		fmt.Fprintf(w, "    %s  %s  (%s)%s\n", short(c.GetSha()), firstLine(c.GetMessage()), orDefault(c.GetAuthor(), "unknown author"), files)
	}
}

// printEvent prints one event: which issue, then its body.
func printEvent(w io.Writer, e *errortrackv1.ErrorEvent, is *errortrackv1.Issue, allFrames bool) {
	fmt.Fprintf(w, "event %s  %s\n", e.GetEventId(), e.GetTitle())
	if is != nil {
		fmt.Fprintf(w, "  issue       %d  %s  [%s]\n", is.GetId(), is.GetTitle(), issueStatusWord(is))
		printSuspects(w, is.GetSuspectCommits())
	}
	printEventBody(w, e, allFrames)
}

// printEventBody: when and where, the message, the exception chain (the
// raised exception first, then what caused it; in-app frames only unless
// allFrames, innermost last, each with its context lines and the current
// line marked ">"), tags, user, request, breadcrumbs, contexts.
func printEventBody(w io.Writer, e *errortrackv1.ErrorEvent, allFrames bool) {
	d := e.GetDetail()
	fmt.Fprintf(w, "  when        %s (received %s)\n", stamp(e.GetTimestamp().AsTime()), stamp(e.GetReceivedAt().AsTime()))
	fmt.Fprintf(w, "  release     %s   environment %s   level %s   platform %s\n", orDefault(e.GetRelease(), "(none)"), e.GetEnvironment(), e.GetLevel(), e.GetPlatform())
	if d.GetTransaction() != "" {
		fmt.Fprintf(w, "  transaction %s\n", d.GetTransaction())
	}
	if d.GetDurationMs() > 0 {
		fmt.Fprintf(w, "  duration    %s\n", durMS(d.GetDurationMs()))
	}
	if e.GetMessage() != "" {
		fmt.Fprintf(w, "  message     %s\n", e.GetMessage())
	}
	exs := d.GetExceptions()
	for i := len(exs) - 1; i >= 0; i-- {
		ex := exs[i]
		fmt.Fprintln(w)
		head := ex.GetType()
		if ex.GetValue() != "" {
			head += ": " + ex.GetValue()
		}
		if i < len(exs)-1 {
			fmt.Fprintln(w, "  caused by")
		}
		mech := ""
		if ex.GetMechanism() != "" {
			mech = "  (mechanism " + ex.GetMechanism()
			if ex.GetUnhandled() {
				mech += ", unhandled"
			} else if ex.GetHandled() {
				mech += ", handled"
			}
			mech += ")"
		}
		fmt.Fprintf(w, "  %s%s\n", head, mech)
		printFrames(w, ex.GetFrames(), allFrames)
	}
	if len(exs) == 0 && len(d.GetFrames()) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "  stack trace")
		printFrames(w, d.GetFrames(), allFrames)
	}
	kv := func(title string, l []*errortrackv1.KeyValue) {
		if len(l) == 0 {
			return
		}
		fmt.Fprintf(w, "\n  %s\n", title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, p := range l {
			fmt.Fprintf(tw, "    %s\t%s\n", p.GetKey(), p.GetValue())
		}
		_ = tw.Flush()
	}
	kv("tags", d.GetTags())
	if u := d.GetUser(); u != nil {
		var l []*errortrackv1.KeyValue
		for _, p := range [][2]string{{"id", u.GetId()}, {"email", u.GetEmail()}, {"username", u.GetUsername()}, {"ip_address", u.GetIpAddress()}} {
			if p[1] != "" {
				l = append(l, &errortrackv1.KeyValue{Key: p[0], Value: p[1]})
			}
		}
		kv("user", append(l, u.GetData()...))
	}
	if r := d.GetRequest(); r != nil {
		fmt.Fprintf(w, "\n  request     %s %s\n", r.GetMethod(), r.GetUrl())
		if r.GetQueryString() != "" {
			fmt.Fprintf(w, "    query     %s\n", r.GetQueryString())
		}
		kv("request headers (cookies and authorization left out)", r.GetHeaders())
	}
	if bs := d.GetBreadcrumbs(); len(bs) > 0 {
		fmt.Fprintln(w, "\n  breadcrumbs")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, b := range bs {
			at := ""
			if b.GetTimestamp() != nil {
				at = b.GetTimestamp().AsTime().UTC().Format("15:04:05.000")
			}
			var data []string
			for _, p := range b.GetData() {
				data = append(data, p.GetKey()+"="+p.GetValue())
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", at, orDefault(b.GetCategory(), b.GetType()), b.GetLevel(), b.GetMessage(), strings.Join(data, " "))
		}
		_ = tw.Flush()
	}
	kv("contexts", d.GetContexts())
	for _, a := range e.GetAttachments() {
		fmt.Fprintf(w, "  attachment  %s (%s, %d bytes)\n", a.GetFilename(), a.GetContentType(), a.GetSize())
	}
}

// printFrames prints frames innermost last, as Sentry lists them; system
// frames are folded into a count unless all.
func printFrames(w io.Writer, frames []*errortrackv1.StackFrame, all bool) {
	hidden := 0
	anyInApp := false
	for _, f := range frames {
		anyInApp = anyInApp || f.GetInApp()
	}
	flush := func() {
		if hidden > 0 {
			fmt.Fprintf(w, "    ... %d system frame(s) (--all-frames shows them)\n", hidden)
			hidden = 0
		}
	}
	for _, f := range frames {
		// With no frame marked in app, show them all rather than nothing.
		if !all && anyInApp && !f.GetInApp() {
			hidden++
			continue
		}
		flush()
		file := f.GetFilename()
		if file == "" {
			file = f.GetAbsPath()
		}
		if file == "" {
			file = f.GetModule()
		}
		loc := file
		if f.GetLineno() > 0 {
			loc += fmt.Sprintf(":%d", f.GetLineno())
			if f.GetColno() > 0 {
				loc += fmt.Sprintf(":%d", f.GetColno())
			}
		}
		mark := ""
		if f.GetInApp() && all {
			mark = "  [in app]"
		}
		fmt.Fprintf(w, "    at %s in %s%s\n", orDefault(f.GetFunction(), "?"), loc, mark)
		if f.GetContextLine() == "" {
			continue
		}
		n := int(f.GetLineno())
		line := func(no int, cur bool, text string) {
			m := " "
			if cur {
				m = ">"
			}
			if n > 0 {
				fmt.Fprintf(w, "      %s %5d | %s\n", m, no, text)
			} else {
				fmt.Fprintf(w, "      %s | %s\n", m, text)
			}
		}
		pre := f.GetPreContext()
		for i, l := range pre {
			line(n-len(pre)+i, false, l)
		}
		line(n, true, f.GetContextLine())
		for i, l := range f.GetPostContext() {
			line(n+1+i, false, l)
		}
	}
	flush()
}

// printReleases prints each release per environment with errors,
// transactions and sessions apart, then its transactions by name.
func printReleases(w io.Writer, rs []*errortrackv1.Release) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tENVIRONMENT\tEVENTS\tERRORS\tTRANSACTIONS\tSESSIONS\tCRASHED\tCRASH-FREE")
	for _, r := range rs {
		if len(r.GetHealth()) == 0 {
			fmt.Fprintf(tw, "%s\t-\t0\t0\t0\t0\t0\t-\n", r.GetVersion())
		}
		for _, h := range r.GetHealth() {
			crashFree := "-"
			if h.GetSessions() > 0 {
				crashFree = fmt.Sprintf("%.2f%%", 100*h.GetCrashFreeRate())
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.GetVersion(), h.GetEnvironment(), h.GetEvents(), h.GetErrors(), h.GetTransactions(), h.GetSessions(), h.GetCrashed(), crashFree)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var ts []*errortrackv1.TransactionSummary
	for _, r := range rs {
		ts = append(ts, r.GetTransactionNames()...)
	}
	if len(ts) > 0 {
		fmt.Fprintln(w)
		return printTransactions(w, ts)
	}
	return nil
}

func printTransactions(w io.Writer, ts []*errortrackv1.TransactionSummary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tENVIRONMENT\tTRANSACTION\tCOUNT\tP50\tP95")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", orDefault(t.GetRelease(), "(no release)"), t.GetEnvironment(), t.GetName(), t.GetCount(), durMS(t.GetP50Ms()), durMS(t.GetP95Ms()))
	}
	return tw.Flush()
}

func durMS(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	return time.Duration(ms * float64(time.Millisecond)).Round(100 * time.Microsecond).String()
}

func stamp(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
