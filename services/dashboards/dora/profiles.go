package dora

import (
	"fmt"
	"strings"
	"time"
)

// Profile rates metrics: the bucket names and thresholds of one tool.
type Profile struct {
	Name, Title string
	// Each returns the bucket of a result; "" when the metric has no data.
	DeploymentFrequency func(Result) string
	LeadTime            func(Result) string
	ChangeFailureRate   func(Result) string
	TimeToRestore       func(Result) string
}

// Profiles are the threshold profiles, by name; DefaultProfile first in
// ProfileNames.
var Profiles = map[string]Profile{
	"fourkeys":     fourkeys,
	"devlake_2021": devlake2021,
	"devlake_2023": devlake2023,
}

// ProfileNames in display order.
var ProfileNames = []string{"devlake_2023", "devlake_2021", "fourkeys"}

// DefaultProfile is used when none is named.
const DefaultProfile = "devlake_2023"

// LookupProfile finds a profile by name ("" for the default).
func LookupProfile(name string) (Profile, error) {
	if name == "" {
		name = DefaultProfile
	}
	p, ok := Profiles[name]
	if !ok {
		return Profile{}, fmt.Errorf("profile %q: want one of %s", name, strings.Join(ProfileNames, ", "))
	}
	return p, nil
}

// ladder returns the first name whose bound v is under (lt) or at most
// (le); the last name otherwise.
func ladder(v float64, le bool, bounds []float64, names ...string) string {
	for i, b := range bounds {
		if v < b || le && v == b {
			return names[i]
		}
	}
	return names[len(names)-1]
}

func minutes(d time.Duration) float64 { return d.Minutes() }

var fourkeys = Profile{
	Name: "fourkeys", Title: "fourkeys (2019 State of DevOps)",
	DeploymentFrequency: func(r Result) string {
		switch {
		case r.Deploys == 0:
			return ""
		case r.MedianDaysPerWeek >= 3:
			return "Daily"
		case r.MedianWeeksWithDeploy >= 1:
			return "Weekly"
		case r.MedianDeploysPerMonth >= 1:
			return "Monthly"
		}
		return "Yearly"
	},
	LeadTime: func(r Result) string {
		if !r.HasLeadTime {
			return ""
		}
		return ladder(minutes(r.LeadTime), false, []float64{1440, 10080, 43800, 262800}, "One day", "One week", "One month", "Six months", "One year")
	},
	ChangeFailureRate: func(r Result) string {
		if r.Deploys == 0 {
			return ""
		}
		switch {
		case r.ChangeFailureRate <= 0.15:
			return "0-15%"
		case r.ChangeFailureRate < 0.46:
			return "16-45%"
		}
		return "46-60%"
	},
	TimeToRestore: func(r Result) string {
		if !r.HasTimeToRestore {
			return ""
		}
		return ladder(r.TimeToRestore.Hours(), false, []float64{24, 168, 730, 4380}, "One day", "One week", "One month", "Six months", "One year")
	},
}

func devlakeCFR(r Result, elite, high, medium float64) string {
	if r.Deploys == 0 {
		return ""
	}
	return ladder(r.ChangeFailureRate, true, []float64{elite, high, medium}, "elite", "high", "medium", "low")
}

func devlakeRestore(r Result) string {
	if !r.HasTimeToRestore {
		return ""
	}
	return ladder(minutes(r.TimeToRestore), false, []float64{60, 1440, 10080}, "elite", "high", "medium", "low")
}

var devlake2021 = Profile{
	Name: "devlake_2021", Title: "Apache DevLake (DORA 2021)",
	DeploymentFrequency: func(r Result) string {
		switch {
		case r.Deploys == 0:
			return ""
		case r.MedianDaysPerWeek >= 5:
			return "elite"
		case r.MedianDaysPerMonth >= 1:
			return "high"
		case r.MedianDaysPerSixMonths >= 1:
			return "medium"
		}
		return "low"
	},
	LeadTime: func(r Result) string {
		if !r.HasLeadTime {
			return ""
		}
		return ladder(minutes(r.LeadTime), false, []float64{60, 10080, 259200}, "elite", "high", "medium", "low")
	},
	ChangeFailureRate: func(r Result) string { return devlakeCFR(r, 0.15, 0.20, 0.30) },
	TimeToRestore:     devlakeRestore,
}

var devlake2023 = Profile{
	Name: "devlake_2023", Title: "Apache DevLake (DORA 2023)",
	DeploymentFrequency: func(r Result) string {
		switch {
		case r.Deploys == 0:
			return ""
		case r.MedianDaysPerWeek >= 5:
			return "elite"
		case r.MedianDaysPerWeek >= 1:
			return "high"
		case r.MedianDaysPerMonth >= 1:
			return "medium"
		}
		return "low"
	},
	LeadTime: func(r Result) string {
		if !r.HasLeadTime {
			return ""
		}
		return ladder(minutes(r.LeadTime), false, []float64{1440, 10080, 43200}, "elite", "high", "medium", "low")
	},
	ChangeFailureRate: func(r Result) string { return devlakeCFR(r, 0.05, 0.10, 0.15) },
	TimeToRestore:     devlakeRestore,
}

// FormatDuration prints a duration as the dashboards do: "3h 12m", "2d 4h",
// "45m", "30s".
func FormatDuration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}
